"""The accept path of discharge letters, beside the HTTP layer: what happens to a letter
between its bytes and its outbox entry (today: how versions of a letter supersede each other)."""
