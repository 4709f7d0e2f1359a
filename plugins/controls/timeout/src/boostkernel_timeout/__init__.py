"""Stop a task after N seconds (threads, asyncio, processes) for boostkernel."""
