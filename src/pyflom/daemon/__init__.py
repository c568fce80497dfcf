"""The lock daemon: an asyncio server that adapts sockets to the sans-IO lock core."""
