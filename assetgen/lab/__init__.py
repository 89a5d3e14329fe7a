"""The prompt lab (``assetgen lab``): audition prompts on warm models, keep the takes worth a manifest row.

``rows`` turns requests into manifest rows and keeps them; ``engine`` makes takes with the render's own stages;
``server`` is the page and JSON API on the review server's stack. Import-light: torch loads with the first model.
"""
