"""The executor contract and the green-thread contract, run in a gevent-patched process.

The plain pytest run collects one test that runs this file again in a fresh interpreter that calls
``monkey.patch_all()`` first (see :mod:`boostkernel.testing.green`); there the contract class is collected.
"""

from __future__ import annotations

from gevent import monkey

if monkey.is_module_patched("socket"):
    from boostkernel_gevent.executor import GeventExecutor

    from boostkernel.testing.green import GreenExecutorContract

    class TestGeventExecutorContract(GreenExecutorContract):
        executor_class = GeventExecutor

else:
    from boostkernel.testing.green import run_patched

    def test_contract_in_a_patched_process() -> None:
        run_patched(__file__, "from gevent import monkey; monkey.patch_all()")
