"""`restorekit train` (being written by the lead; replaced shortly)."""
