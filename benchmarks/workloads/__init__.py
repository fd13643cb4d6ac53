"""Parent-side workloads: each module plans its child processes, runs them, and returns raw records.

Every record keeps the child's own result, the parent's measurements (wall from spawn to exit,
peak RSS and CPU from ``wait4``) and the read-back check; ``report`` turns them into tables.
"""
