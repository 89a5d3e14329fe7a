"""Versioned asset store: atomic WAV files under ROOT/<scene>/<asset>/ plus the SQLite index."""
