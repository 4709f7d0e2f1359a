# ruff: noqa: I001 - kept as written in the reference system's docs, import line aside
# The reference system's docs 1.2.1 example 2 (funboost with a memory queue and 10 threads).
# Changed: the import line; time.sleep(3) -> time.sleep(0.3) and range(100) -> range(30) to keep the test short.
import time
from boostkernel_funboost import BoosterParams, BrokerEnum


@BoosterParams(queue_name="test_insteda_thread_queue", broker_kind=BrokerEnum.MEMORY_QUEUE, concurrent_num=10, is_auto_start_consuming_message=True)
def f(x):
    time.sleep(0.3)
    print(x)


if __name__ == '__main__':
    for i in range(30):
        f.push(i)
