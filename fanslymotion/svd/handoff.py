"""The render thread hands frames to an encoding thread: SVD generates pass n+1 on the GPU while
pass n goes through interpolation, the camera path and x264 on the CPU, so the GPU never waits
on the encoder. A bounded queue (two passes of frames) keeps memory flat; a failure on either
side stops the other."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

_END = object()


class _ProducerFailed(Exception):
    """Raised into the consumer when the producer stopped with an error."""


class Handoff(Generic[T, R]):
    """`run(items, consume)`: `consume(iterator)` runs in a thread of its own and reads what
    the calling thread draws from `items`; returns what `consume` returned, or raises the first
    error of either side (the producer's when both failed)."""

    def __init__(self, capacity: int, name: str = "encode") -> None:
        self._queue: queue.Queue[object] = queue.Queue(max(1, capacity))
        self._name = name
        self._stop = threading.Event()

    def run(self, items: Iterator[T], consume: Callable[[Iterator[T]], R]) -> R:
        outcome: list[R] = []
        failure: list[BaseException] = []

        def consumer() -> None:
            try:
                outcome.append(consume(self._drain()))
            except _ProducerFailed:
                pass
            except BaseException as exc:
                failure.append(exc)
            finally:
                self._stop.set()

        thread = threading.Thread(target=consumer, name=self._name, daemon=True)
        thread.start()
        try:
            for item in items:
                if not self._put(item):
                    break  # the consumer ended early: its error is raised below
            self._put(_END)
        except BaseException:
            self._stop_consumer()
            thread.join()
            raise
        thread.join()
        if failure:
            raise failure[0]
        if not outcome:
            raise RuntimeError("the frame consumer ended without a result")
        return outcome[0]

    def _put(self, item: object) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _stop_consumer(self) -> None:
        self._stop.set()
        # Make room and wake a consumer that waits for the next item.
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        self._queue.put_nowait(_ProducerFailed)

    def _drain(self) -> Iterator[T]:
        while True:
            item = self._queue.get()
            if item is _END:
                return
            if item is _ProducerFailed:
                raise _ProducerFailed()
            yield item  # type: ignore[misc]
