"""Console themes (Textual ``Theme`` objects); filled in by the console issue."""
