/* k8s_pod_revnat: k8s_pod with the reverse NAT of the services' replies in
 * k8s_from_pod (HASH `rev_nat`), for examples/k8s-node/live.toml. A file of its
 * own so that every object builds with the same clang command, and so that the
 * replay example's k8s_pod.o keeps its maps. */
#define K8S_REV_NAT
#include "k8s_pod.c"
