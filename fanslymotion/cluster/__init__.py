"""Cluster mode: the front and its GPU workers share jobs through PostgreSQL and procrastinate.

`db` holds all SQL, `schema` the tables, `front` the front's job service (the same interface as
the single box's `queue.JobQueue`), `routes` the HTTP routes only workers may use, and `worker`
the `python -m fanslymotion worker` process.
"""
