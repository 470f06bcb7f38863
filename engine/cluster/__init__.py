"""Cluster mode (the optional ``drylocal[cluster]`` extra): the devices of several machines behind one API process.

One detached, named Ray actor per device (``actor.DeviceActor``) runs today's ``GpuWorker`` unchanged, with a
job mirror in place of the database (``mirror.py``): it streams each job's transitions back as messages
(``messages.py``). On the API process a ``RemoteWorker`` per actor (``remote_worker.py``) is what the dispatcher
routes to; it applies each message through the guarded ``JobStore`` transitions, the result store and the event
bus, so the job row stays the truth and GPU nodes never touch the database or share a filesystem.
``placements.py`` records which actor runs a job; ``pool.py`` finds the devices, makes the actors and reconciles
jobs whose actor was lost (the attempts rule: re-queued once, then ``WORKER_TIMEOUT`` with the refund);
``ray_node.py`` starts or joins Ray with drylocal's security settings.

Ray is imported by ``actor``, ``remote_worker``, ``pool`` and ``ray_node`` only: nothing outside cluster mode
imports this package's submodules, so plain ``drylocal serve`` never loads Ray.
"""

__all__ = ()
