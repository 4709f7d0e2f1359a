# ruff: noqa: I001 - written as a funboost user would, import line aside
# Two processes stacked on threads (funboost's multi_process_consume), on the embedded SQLite broker.
import os
from boostkernel_funboost import boost, BoosterParams, BrokerEnum, ConcurrentModeEnum


@boost(BoosterParams(queue_name="fb_example_multi_process", broker_kind=BrokerEnum.SQLITE_QUEUE,
                     concurrent_mode=ConcurrentModeEnum.THREADING, concurrent_num=2))
def square(x):
    print(f"{x} squared is {x * x} in process {os.getpid()}.")


if __name__ == "__main__":
    square.clear()
    for i in range(8):
        square.push(i)
    square.multi_process_consume(2)
