"""A real local Kubernetes control plane (etcd, API server, controllers, kwok) for tests and demos.

Every pod bound to one of its kwok nodes is run as a real local process by the pod runner.
"""
