"""The executor contract and the green-thread contract, run in an eventlet-patched process.

The plain pytest run collects one test that runs this file again in a fresh interpreter that calls
``eventlet.monkey_patch()`` first (see :mod:`boostkernel.testing.green`); there the contract class is collected.
"""

from __future__ import annotations

import warnings

with warnings.catch_warnings():  # eventlet warns on import that it is deprecated
    warnings.simplefilter("ignore")
    from eventlet import patcher

if patcher.is_monkey_patched("socket"):
    from boostkernel_eventlet.executor import EventletExecutor

    from boostkernel.testing.green import GreenExecutorContract

    class TestEventletExecutorContract(GreenExecutorContract):
        executor_class = EventletExecutor

else:
    from boostkernel.testing.green import run_patched

    def test_contract_in_a_patched_process() -> None:
        run_patched(__file__, "import warnings; warnings.simplefilter('ignore')\nimport eventlet; eventlet.monkey_patch()")
