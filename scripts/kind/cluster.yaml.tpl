# The one-node tiergate kind cluster (scripts/kind/up.sh fills the @...@ fields).
kind: Cluster
apiVersion: kind.x-k8s.io/v1alpha4
name: @CLUSTER@
networking:
  disableDefaultCNI: @DISABLE_CNI@
  podSubnet: 10.244.0.0/16
nodes:
  - role: control-plane
    image: @NODE_IMAGE@
kubeadmConfigPatches:
  - |
    kind: KubeletConfiguration
    failCgroupV1: false
    imageGCHighThresholdPercent: 100
    imageGCLowThresholdPercent: 99
@ETCD_PATCH@
