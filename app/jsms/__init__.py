"""What we know about the JSMS upstream: signatures, the callback reader, record shapes, code
tables, the REST client.

Nothing in this package knows about Flask or the database.
"""
