"""tiergate's development kits: what runs beside the product, never in a cluster.

`devcluster` (a real local Kubernetes control plane: etcd, kube-apiserver, the controllers,
kwok and a pod runner), `drill` (the 2020 incident replayed against plain Deployments and
against tiergate) and `smsc` (a test SMSC, ``tiergate smsc``). Tests, benchmarks, the demo and
the drill use them from a repository checkout; the ``tiergate`` wheel does not ship them, and an
import-linter contract keeps the product from importing them (the model: Kopf's
``ban-toolkits``). Demo and e2e images add the test SMSC alone, as the ``tiergate-smsc``
distribution (``kits/smsc``).
"""
