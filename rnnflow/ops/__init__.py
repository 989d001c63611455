"""Processes and servers, not ML: settings (environment defaults), services (health checks before
any work), processes (pids, process groups, ports; standard library only), guard (stops a server
whose parent died), serve (deployments on a schedule), team and team_services (PostgreSQL, MLflow
and Prefect servers, workers). Nothing in the ML library imports this package.

This file imports nothing: benchmarks and the server guard import single modules of it cheaply.
"""
