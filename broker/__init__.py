"""The embedded stack's message broker: kombu's filesystem transport, made safe for concurrent
writers (filesystem.py). The stack's own broker is Redis, through kombu's transport."""
