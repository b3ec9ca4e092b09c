"""Cluster mode: the front and its GPU workers share jobs through PostgreSQL and procrastinate.

`db` holds all SQL, `schema` the tables, `front` the front's executor (`ClusterExecutor`:
the job service `queue.JobQueue` renders through it as the single box's does through
`dispatcher.LocalExecutor`), `routes` the HTTP routes only workers may use, and `worker` the
`python -m fanslymotion worker` process.
"""
