"""asyncio concurrency for boostkernel: async def tasks run natively on one event loop."""
