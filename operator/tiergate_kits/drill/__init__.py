"""The incident drill: the September 2020 outage replayed against Deployments, Argo Rollouts, tiergate.

`tiergate drill` starts the whole stack on the local control plane, ships a bad release to
every tier at once in both modes, and reports from what it recorded (`analysis`, `report`,
`timeline`).
"""
