"""The read side: parameter parsing, keyset pages, CSV streams and statistics over the store."""
