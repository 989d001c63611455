"""Processes and servers, not ML: settings (environment defaults), services (health checks before
any work), processes (pids, process groups, ports; standard library only), guard (stops a server
whose parent died), serve (deployments on a schedule), and team mode: stack (its settings and
secrets), team_services (PostgreSQL, MLflow and Prefect servers, workers), team (up, down,
status). Nothing in the ML library imports this package.

This file imports nothing: benchmarks and the server guard import single modules of it cheaply.
"""
