/** Where a gateway can run, and the Kubernetes Service types it offers: stack config validates them, components use them. */
export const TARGETS = ["docker", "kubernetes"] as const;
export type Target = (typeof TARGETS)[number];

export const SERVICE_TYPES = ["ClusterIP", "NodePort", "LoadBalancer"] as const;
export type ServiceType = (typeof SERVICE_TYPES)[number];
