"""Mail out: who is told of a change, what they get, and its delivery through the outbox."""
