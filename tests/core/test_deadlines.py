"""The core's timer queue against a plain model: a dict of each object's
deadline. Under any sequence of deadline changes (many on the same second,
as lingering transactions are), forgets and passes of time, the queue's
earliest deadline is the model's, and a pass hands out exactly the objects
whose deadline has come, earliest first, once each unless handling one
armed it again for a time that has come too."""

from __future__ import annotations

from hypothesis import example, given, settings
from hypothesis import strategies as st

from sipfork.core.deadlines import Deadlines


class Timed:
    """An object with a settable deadline; ``rearm`` is what handling it
    sets next (None: it is finished)."""

    def __init__(self, name: int) -> None:
        self.name = name
        self.at: float | None = None
        self.rearm: float | None = None

    def deadline(self) -> float | None:
        return self.at

    def __repr__(self) -> str:
        return f"Timed({self.name}, at={self.at})"


def queued(*deadlines: float) -> tuple[Deadlines, list[Timed]]:
    """A queue holding one object per deadline, armed in that order."""
    queue = Deadlines()
    objects = [Timed(i) for i in range(len(deadlines))]
    for obj, at in zip(objects, deadlines, strict=True):
        obj.at = at
        queue.touch(obj)
    return queue, objects


# Few distinct times, so that many objects share a deadline.
times = st.sampled_from([1.0, 2.0, 3.0, 4.5])
ops = st.lists(
    st.one_of(
        st.tuples(st.just("set"), st.integers(0, 3), times | st.none(), st.none() | times),
        st.tuples(st.just("forget"), st.integers(0, 3)),
        st.tuples(st.just("pass"), times),
    ),
    min_size=4,
    max_size=60,
)


@settings(max_examples=1000, deadline=None)
@given(ops)
# moved to a later second, an object's old place in a bucket that still
# holds others is stale: it must not come out with them
@example([("set", 0, 1.0, None), ("set", 1, 1.0, None), ("set", 0, 3.0, None), ("pass", 2.0)])
def test_the_queue_agrees_with_a_dict_of_deadlines(operations):
    queue = Deadlines()
    objects = [Timed(i) for i in range(4)]
    model: dict[Timed, float] = {}  # what is armed, as the core sees it
    for op in operations:
        if op[0] == "set":
            obj = objects[op[1]]
            obj.at, obj.rearm = op[2], op[3]
            queue.touch(obj)
            if obj.at is None:
                model.pop(obj, None)
            else:
                model[obj] = obj.at
        elif op[0] == "forget":
            obj = objects[op[1]]
            queue.forget(obj)
            model.pop(obj, None)
            obj.at = None  # forgotten objects are not touched again unless set
        else:
            now = op[1]
            before = dict(model)
            handed: list[tuple[float, Timed]] = []
            for obj in queue.due(now):
                assert model.get(obj) is not None and model[obj] <= now, (obj, model)
                handed.append((model.pop(obj), obj))
                # as the core does: handled, it may have a new deadline
                obj.at, obj.rearm = obj.rearm, None
                queue.touch(obj)
                if obj.at is not None:
                    model[obj] = obj.at
            # none left behind; what was armed before the pass came out by
            # deadline (one armed again while handled may come between)
            assert all(at > now for at in model.values()), (now, model)
            assert {obj for _, obj in handed} >= {obj for obj, at in before.items() if at <= now}
            firsts: list[float] = []
            for at, obj in handed:
                if obj in before and at == before.pop(obj):
                    firsts.append(at)
            assert firsts == sorted(firsts)
        assert queue.earliest() == min(model.values(), default=None)


def test_objects_on_the_same_deadline_come_out_in_the_order_they_were_armed():
    queue = Deadlines()
    objects = [Timed(i) for i in range(5)]
    for obj in reversed(objects):
        obj.at = 2.0
        queue.touch(obj)
    objects[1].at = 3.0  # moved away and back: its first place is stale
    queue.earliest()
    objects[1].at = 2.0
    queue.touch(objects[1])
    assert queue.earliest() == 2.0
    assert [obj.name for obj in queue.due(2.0)] == [4, 3, 2, 0, 1]
    assert queue.earliest() is None


def test_a_pass_cut_short_by_an_error_leaves_the_rest_for_the_next():
    # The core catches an error in handling one object (a bug in it must not
    # stop the others): the objects after it in the same second still fire.
    queue, objects = queued(1.0, 1.0, 1.0)
    assert queue.earliest() == 1.0
    passing = queue.due(2.0)
    assert next(passing).name == 0
    passing.close()  # as when the handler raised
    objects[0].at = None
    queue.touch(objects[0])
    assert queue.earliest() == 1.0
    assert [obj.name for obj in queue.due(2.0)] == [1, 2]
    assert queue.earliest() is None


def test_an_object_armed_for_a_time_already_past_while_a_bucket_is_walked_comes_after_it():
    queue, (first, _, late) = queued(2.0, 2.0, 3.0)
    handed = []
    for obj in queue.due(5.0):
        handed.append(obj.name)
        obj.at = obj.rearm
        if obj is first:
            late.at = 1.0  # moved to a time that has come: it goes on top of the heap
            queue.touch(late)
        queue.touch(obj)
    assert handed == [0, 1, 2]
    assert queue.earliest() is None


def test_asking_for_the_earliest_deadline_in_the_middle_of_a_pass_changes_nothing_in_it():
    queue, _ = queued(1.0, 1.0)
    handed = []
    for obj in queue.due(1.0):
        handed.append(obj.name)
        obj.at = None
        queue.touch(obj)
        queue.earliest()  # after the last one, this drops the walked bucket
    assert handed == [0, 1]
    assert queue.earliest() is None
