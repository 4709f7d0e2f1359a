# ruff: noqa: I001 - kept as written in the reference system's docs, import line aside
# The reference system's older API example (get_consumer / patch_frame_config, seeds 004).
# Changed: the import line; REDIS_PASSWORD removed (the local Redis has none) and the queue is purged first;
# is_using_rpc_mode=True is given to get_consumer, because results are kept per booster here (the older API
# switched them on per message; publishing with is_using_rpc_mode=True on a booster without results is refused).
import os

from boostkernel_funboost import get_consumer, patch_frame_config, ConsumersManager, IndependenceFuctionConsumingControlConfig


def add(x, y):
    print(f'{x} + {y} = {x + y}')
    return x + y


patch_frame_config(REDIS_HOST='127.0.0.1',
                   REDIS_PORT=int(os.environ.get('REDIS_PORT', 6379)),
                   REDIS_DB=7,)

consumer_add = get_consumer('queue_test569', consuming_function=add, broker_kind=9, is_using_rpc_mode=True)
consumer_add.clear()

ConsumersManager.show_all_consumer_info()
consumer_add.start_consuming_message()

consumer_add.publisher_of_same_queue.publish(dict(x=1, y=2))

async_result = consumer_add.publisher_of_same_queue.publish(dict(x=3, y=4),
               independence_control_config=IndependenceFuctionConsumingControlConfig(is_using_rpc_mode=True))
print(async_result.result)
