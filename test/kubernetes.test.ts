/**
 * The Kubernetes target (components/KubernetesGateway.ts) under Pulumi mocks, on the committed
 * stack file Pulumi.k8s.yaml: every manifest the program declares is validated against
 * Kubernetes' OpenAPI schemas (kubernetes-models: required fields, types, formats, enums), and the
 * parts that make it safe are checked where they meet: security settings, selectors against pod
 * labels, probes, the Secret as a secret, the config checksum.
 */
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { Deployment, StatefulSet } from "kubernetes-models/apps/v1";
import { Ingress, NetworkPolicy } from "kubernetes-models/networking.k8s.io/v1";
import { PodDisruptionBudget } from "kubernetes-models/policy/v1";
import { ConfigMap, Namespace, Secret, Service } from "kubernetes-models/v1";
import { beforeAll, describe, expect, it } from "vitest";
import { configDigest } from "../components/AuthProxy";
import { CONFIG_CHECKSUM_ANNOTATION, configMapKey, OLLAMA_HOME, pullModelsScript } from "../components/KubernetesGateway";
import {
  autoName,
  evaluateProgram,
  expectProgramRefuses,
  findResource,
  installMocks,
  isSecretValue,
  type Program,
  type RecordedResource,
  stackFileConfig,
  TYPES,
  unwrap,
  valueOf,
} from "../harness/pulumi-mocks";

installMocks();

/** Every Kubernetes type the component declares, with the model that validates it. */
const MODELS: Record<string, new (data: any) => { validate(): void }> = {
  [TYPES.namespace]: Namespace,
  [TYPES.service]: Service,
  [TYPES.configMap]: ConfigMap,
  [TYPES.secret]: Secret,
  [TYPES.statefulSet]: StatefulSet,
  [TYPES.deployment]: Deployment,
  [TYPES.pdb]: PodDisruptionBudget,
  [TYPES.networkPolicy]: NetworkPolicy,
  [TYPES.ingress]: Ingress,
};

const k8sStack = () => stackFileConfig("k8s");
const manifest = (type: string, name: string) => unwrap(findResource(type, name).inputs);
/** Whether every label a selector asks for is on the pod template. */
const selects = (selector: Record<string, string>, labels: Record<string, string>) =>
  Object.keys(selector).length > 0 && Object.entries(selector).every(([k, v]) => labels[k] === v);

describe("the Kubernetes target on Pulumi.k8s.yaml", () => {
  let resources: RecordedResource[];
  let program: Program;
  beforeAll(async () => {
    ({ program, resources } = await evaluateProgram(k8sStack()));
  });

  it("declares only Kubernetes objects (and the credentials), through a provider with mutable Secrets", () => {
    expect(resources.filter((r) => r.type.startsWith("docker:"))).toEqual([]);
    const providers = resources.filter((r) => r.type === TYPES.k8sProvider);
    expect(providers).toHaveLength(1);
    expect(unwrap(providers[0].inputs).enableSecretMutable).toBe("true");
    const urns = resources.map((r) => r.urn);
    expect(new Set(urns).size).toBe(urns.length);
  });

  it("validates every manifest against Kubernetes' OpenAPI schemas", () => {
    const objects = resources.filter((r) => r.type.startsWith("kubernetes:"));
    expect(objects.length).toBeGreaterThanOrEqual(11);
    for (const r of objects) {
      const Model = MODELS[r.type];
      expect(Model, `no schema model for ${r.type}`).toBeDefined();
      expect(() => new Model(unwrap(r.inputs)).validate(), `${r.type} ${r.name}`).not.toThrow();
    }
    // The validator is live: a wrong type and a missing required field are refused.
    const deployment = manifest(TYPES.deployment, "gateway-proxy");
    expect(() => new Deployment({ ...deployment, spec: { ...deployment.spec, replicas: "three" } }).validate()).toThrow("replicas must be integer");
    expect(() => new Deployment({ ...deployment, spec: { ...deployment.spec, selector: undefined } }).validate()).toThrow("selector");
  });

  it("runs the proxy unprivileged: non-root 10001, read-only root, no capabilities, RuntimeDefault seccomp, emptyDirs for tmp and logs", () => {
    const pod = manifest(TYPES.deployment, "gateway-proxy").spec.template.spec;
    expect(pod.securityContext).toEqual({ runAsNonRoot: true, runAsUser: 10001, runAsGroup: 10001, fsGroup: 10001, seccompProfile: { type: "RuntimeDefault" } });
    expect(pod.automountServiceAccountToken).toBe(false);
    const [proxy] = pod.containers;
    expect(proxy.image).toBe("registry.example.com/ollama-gateway-proxy:0.1.0");
    expect(proxy.securityContext).toEqual({
      allowPrivilegeEscalation: false,
      capabilities: { drop: ["ALL"] },
      seccompProfile: { type: "RuntimeDefault" },
      readOnlyRootFilesystem: true,
      runAsNonRoot: true,
      runAsUser: 10001,
    });
    expect(proxy.resources.requests).toEqual({ cpu: "100m", memory: "64Mi" });
    expect(proxy.resources.limits).toEqual({ cpu: "1", memory: "256Mi" });
    const volumes = Object.fromEntries(pod.volumes.map((v: any) => [v.name, v]));
    const mounts = Object.fromEntries(proxy.volumeMounts.map((m: any) => [m.mountPath, m]));
    expect(volumes[mounts["/gateway/tmp"].name].emptyDir).toBeDefined();
    expect(volumes[mounts["/gateway/logs"].name].emptyDir).toBeDefined();
    expect(mounts["/gateway/credentials"]).toMatchObject({ readOnly: true });
    expect(volumes[mounts["/gateway/credentials"].name].secret).toEqual({ secretName: "gateway-proxy-credentials", defaultMode: 0o440 });
    // Ollama: no capabilities, no escalation, RuntimeDefault, in every container.
    const ollamaPod = manifest(TYPES.statefulSet, "gateway-ollama").spec.template.spec;
    expect(ollamaPod.securityContext).toEqual({ seccompProfile: { type: "RuntimeDefault" } });
    for (const c of [...ollamaPod.containers, ...ollamaPod.initContainers])
      expect(c.securityContext, c.name).toEqual({ allowPrivilegeEscalation: false, capabilities: { drop: ["ALL"] }, seccompProfile: { type: "RuntimeDefault" } });
  });

  it("lets only proxy pods reach Ollama pods, on 11434; PodDisruptionBudgets select their pods", () => {
    const proxyLabels = manifest(TYPES.deployment, "gateway-proxy").spec.template.metadata.labels;
    const ollama = manifest(TYPES.statefulSet, "gateway-ollama");
    const ollamaLabels = ollama.spec.template.metadata.labels;
    expect(selects(proxyLabels, ollamaLabels)).toBe(false);
    const policy = manifest(TYPES.networkPolicy, "gateway-ollama-ingress").spec;
    expect(policy.policyTypes).toEqual(["Ingress"]);
    expect(selects(policy.podSelector.matchLabels, ollamaLabels)).toBe(true);
    expect(selects(policy.podSelector.matchLabels, proxyLabels)).toBe(false);
    expect(policy.ingress).toHaveLength(1);
    const [rule] = policy.ingress;
    expect(rule.from).toHaveLength(1);
    expect(selects(rule.from[0].podSelector.matchLabels, proxyLabels)).toBe(true);
    expect(selects(rule.from[0].podSelector.matchLabels, ollamaLabels)).toBe(false);
    expect(rule.from[0].namespaceSelector).toBeUndefined(); // this namespace only
    expect(rule.ports).toEqual([{ protocol: "TCP", port: ollama.spec.template.spec.containers[0].ports[0].containerPort }]);

    const proxyPdb = manifest(TYPES.pdb, "gateway-proxy-pdb").spec;
    const ollamaPdb = manifest(TYPES.pdb, "gateway-ollama-pdb").spec;
    expect(selects(proxyPdb.selector.matchLabels, proxyLabels) && !selects(proxyPdb.selector.matchLabels, ollamaLabels)).toBe(true);
    expect(selects(ollamaPdb.selector.matchLabels, ollamaLabels) && !selects(ollamaPdb.selector.matchLabels, proxyLabels)).toBe(true);
    // maxUnavailable, not minAvailable: a single replica can still be drained.
    expect(proxyPdb.maxUnavailable).toBe(1);
    expect(ollamaPdb.maxUnavailable).toBe(1);
    // Every Service selects the pods it is for.
    expect(selects(manifest(TYPES.service, "gateway-proxy-service").spec.selector, proxyLabels)).toBe(true);
    expect(selects(manifest(TYPES.service, "gateway-ollama-headless").spec.selector, ollamaLabels)).toBe(true);
  });

  it("probes /healthz from inside the proxy pod: ready on 200 only, alive on any answer", () => {
    const [proxy] = manifest(TYPES.deployment, "gateway-proxy").spec.template.spec.containers;
    expect(proxy.readinessProbe.exec.command).toEqual(["curl", "-fsS", "-o", "/dev/null", "--max-time", "4", "http://127.0.0.1:8080/healthz"]);
    expect(proxy.livenessProbe.exec.command).toEqual(["curl", "-sS", "-o", "/dev/null", "--max-time", "4", "http://127.0.0.1:8080/healthz"]);
    // A graceful stop: QUIT after leaving the Service, so streams finish.
    expect(proxy.lifecycle.preStop.exec.command.join(" ")).toContain('kill -QUIT "$pid"');
  });

  it("runs Ollama as a StatefulSet: a model volume per pod, GPUs, models pulled by an init container, behind a headless Service", () => {
    const sts = manifest(TYPES.statefulSet, "gateway-ollama").spec;
    expect(sts.replicas).toBe(2);
    expect(sts.serviceName).toBe("gateway-ollama");
    expect(manifest(TYPES.service, "gateway-ollama-headless").spec.clusterIP).toBe("None");
    expect(sts.volumeClaimTemplates).toEqual([{ metadata: { name: "models" }, spec: { accessModes: ["ReadWriteOnce"], resources: { requests: { storage: "100Gi" } } } }]);
    const [server] = sts.template.spec.containers;
    expect(server.resources.limits["nvidia.com/gpu"]).toBe("1");
    expect(server.volumeMounts).toEqual([{ name: "models", mountPath: OLLAMA_HOME }]);
    expect(server.env).toEqual(expect.arrayContaining([{ name: "OLLAMA_NO_CLOUD", value: "1" }, { name: "OLLAMA_HOST", value: "0.0.0.0:11434" }]));
    const [pull] = sts.template.spec.initContainers;
    expect(pull.command.slice(0, 2)).toEqual(["/bin/sh", "-c"]);
    expect(pull.command.slice(3)).toEqual(["pull-models", "gemma3:1b"]);
    expect(pull.command[2]).toMatch(/ollama serve & server=\$!/);
    expect(pull.volumeMounts).toEqual([{ name: "models", mountPath: OLLAMA_HOME }]);
    expect(pull.resources.limits?.["nvidia.com/gpu"]).toBeUndefined();
  });

  it("keeps the credentials in a Secret as secret outputs, holding the generated key's digest", async () => {
    const secret = findResource(TYPES.secret, "gateway-proxy-credentials");
    expect(isSecretValue(secret.inputs.stringData)).toBe(true);
    const files = unwrap(secret.inputs.stringData);
    expect(Object.keys(files).sort()).toEqual(["api-keys", "htpasswd"]);
    const keys = await valueOf(program.apiKeys);
    expect(files["api-keys"]).toContain(createHash("sha256").update(keys.app).digest("hex"));
    expect(files["api-keys"]).not.toContain(keys.app);
    expect(JSON.stringify(resources.filter((r) => r.type !== TYPES.password && r.type !== TYPES.secret).map((r) => unwrap(r.inputs)))).not.toContain(keys.app);
  });

  it("mounts every config file from the ConfigMap and rolls the Deployment when one changes (checksum annotation)", async () => {
    const configMap = manifest(TYPES.configMap, "gateway-proxy-config");
    const pod = manifest(TYPES.deployment, "gateway-proxy").spec.template;
    const items = pod.spec.volumes.filter((v: any) => v.configMap).flatMap((v: any) => v.configMap.items.map((i: any) => i.key));
    expect(items.sort()).toEqual(Object.keys(configMap.data).sort());
    // Auto-named (a changed config is a new ConfigMap): the volumes name what the provider named it.
    expect(configMap.metadata.name).toBeUndefined();
    for (const v of pod.spec.volumes.filter((v: any) => v.configMap)) expect(v.configMap.name).toBe(autoName("gateway-proxy-config"));
    const files = Object.fromEntries(
      pod.spec.volumes
        .filter((v: any) => v.configMap)
        .flatMap((v: any) => v.configMap.items.map((i: any) => [`${v.name}/${i.path}`, configMap.data[i.key]])),
    );
    expect(files["conf/nginx.conf"]).toBe(configMap.data[configMapKey("conf/nginx.conf")]);
    expect(pod.metadata.annotations[CONFIG_CHECKSUM_ANNOTATION]).toBe(configDigest(files));
    // Ollama is resolved while the proxy runs, through the cluster DNS.
    expect(files["conf/nginx.conf"]).toContain("resolver kube-dns.kube-system.svc.cluster.local valid=5s;");
    expect(files["conf/nginx.conf"]).toContain('default "gateway-ollama.ollama-gateway.svc.cluster.local:11434";');
    // The per-caller limit (30/60) split over 3 proxies.
    expect(files["lua/gateway/config.lua"]).toContain("rate = { rps = 10, burst = 20 },");

    const before = pod.metadata.annotations[CONFIG_CHECKSUM_ANNOTATION];
    await evaluateProgram({ ...k8sStack(), maxBodySize: "10m" });
    expect(manifest(TYPES.deployment, "gateway-proxy").spec.template.metadata.annotations[CONFIG_CHECKSUM_ANNOTATION]).not.toBe(before);
    ({ program, resources } = await evaluateProgram(k8sStack()));
  });

  it("serves Prometheus metrics on each proxy pod (metricsPort, default 9145), announced by annotations and never through the Service", () => {
    const pod = manifest(TYPES.deployment, "gateway-proxy").spec.template;
    expect(pod.spec.containers[0].ports).toContainEqual({ name: "metrics", containerPort: 9145, protocol: "TCP" });
    expect(pod.metadata.annotations).toMatchObject({ "prometheus.io/scrape": "true", "prometheus.io/port": "9145", "prometheus.io/path": "/metrics" });
    expect(manifest(TYPES.service, "gateway-proxy-service").spec.ports.map((p: any) => p.name)).toEqual(["http"]);
    const configMap = manifest(TYPES.configMap, "gateway-proxy-config");
    expect(configMap.data[configMapKey("conf/nginx.conf")]).toContain("listen 0.0.0.0:9145;");
  });

  it("exposes the proxy through its Service and the Ingress (class, host, TLS Secret)", async () => {
    const service = manifest(TYPES.service, "gateway-proxy-service").spec;
    expect(service.type).toBe("ClusterIP");
    expect(service.ports).toEqual([{ name: "http", port: 8080, targetPort: "http", protocol: "TCP" }]);
    const ingress = manifest(TYPES.ingress, "gateway-ingress").spec;
    expect(ingress.ingressClassName).toBe("nginx");
    expect(ingress.tls).toEqual([{ hosts: ["ollama.example.com"], secretName: "ollama-example-com-tls" }]);
    expect(ingress.rules[0].http.paths[0].backend.service).toEqual({ name: "gateway", port: { name: "http" } });
    expect(await valueOf(program.endpoint)).toBe("https://ollama.example.com");
  });

  it("without an Ingress, with TLS in the proxy and a LoadBalancer: the Secret holds tls.pem and the Service both ports", async () => {
    const { k8sIngressHost: _h, k8sIngressClass: _c, k8sIngressTlsSecret: _t, tlsMode: _m, ...rest } = k8sStack();
    const evaluated = await evaluateProgram({ ...rest, tlsMode: "selfSigned", k8sServiceType: "LoadBalancer", ollamaGpus: "0", models: "[]" });
    expect(evaluated.resources.filter((r) => r.type === TYPES.ingress)).toEqual([]);
    const service = manifest(TYPES.service, "gateway-proxy-service").spec;
    expect(service.type).toBe("LoadBalancer");
    expect(service.ports.map((p: any) => p.port)).toEqual([8080, 8443]);
    expect(Object.keys(unwrap(findResource(TYPES.secret, "gateway-proxy-credentials").inputs.stringData)).sort()).toEqual(["api-keys", "htpasswd", "tls.pem"]);
    const sts = manifest(TYPES.statefulSet, "gateway-ollama").spec.template.spec;
    expect(sts.initContainers).toBeUndefined();
    expect(sts.containers[0].resources.limits["nvidia.com/gpu"]).toBeUndefined();
    expect(await valueOf(evaluated.program.endpoint)).toBe("https://ollama.example.com:8443");
    for (const r of evaluated.resources.filter((r) => r.type.startsWith("kubernetes:"))) new MODELS[r.type](unwrap(r.inputs)).validate();
  });

  it("refuses Kubernetes settings that cannot work, every problem at once, and declares nothing", async () => {
    const { proxyImage: _image, ...withoutImage } = k8sStack();
    await expectProgramRefuses({ ...withoutImage, tlsMode: "selfSigned", gpu: "true", k8sNamespace: "Ollama_GW", ollamaStorageSize: "lots", k8sServiceType: "External" }, [
      "Invalid stack config (6 problems):",
      "- `ollama-gateway:k8sNamespace` is \"Ollama_GW\"; use a Kubernetes namespace name: lowercase letters, digits and `-`, at most 63, such as `ollama-gateway`.",
      "- `ollama-gateway:ollamaStorageSize` is \"lots\"; use a Kubernetes quantity such as `50Gi` or `500G`.",
      "- `ollama-gateway:k8sServiceType` is \"External\"; use `ClusterIP`, `NodePort` or `LoadBalancer`.",
      "- `ollama-gateway:gpu` is true but means nothing with `target` `kubernetes` (use `ollamaGpus` (GPUs per Ollama pod)); remove it.",
      "- `ollama-gateway:proxyImage` is missing; a cluster cannot build the proxy image: build image/proxy/Dockerfile (`npm run image:proxy`), push it to a registry the cluster pulls from, and set `proxyImage` to it pinned (tag or digest) when `target` is `kubernetes`.",
      "- `ollama-gateway:k8sIngressHost` is \"ollama.example.com\" but `tlsMode` is \"selfSigned\"; the Ingress reaches the proxy over plain HTTP and ends TLS itself: set `tlsMode` to `none` (and `k8sIngressTlsSecret`), or remove `ollama-gateway:k8sIngressHost`.",
    ]);
  });

  it("refuses Kubernetes keys on the Docker target, naming `target`", async () => {
    await expectProgramRefuses({ ...stackFileConfig("dev"), proxyReplicas: "3", k8sIngressHost: "a.example.com", target: "swarm" }, [
      "Invalid stack config (1 problem):",
      "- `ollama-gateway:target` is \"swarm\"; use `docker` or `kubernetes`.",
    ]);
    await expectProgramRefuses({ ...stackFileConfig("dev"), proxyReplicas: "3", k8sIngressHost: "a.example.com" }, [
      "Invalid stack config (2 problems):",
      "- `ollama-gateway:proxyReplicas` is set but `target` is \"docker\"; set `target` to `kubernetes` or remove `ollama-gateway:proxyReplicas`.",
      "- `ollama-gateway:k8sIngressHost` is set but `target` is \"docker\"; set `target` to `kubernetes` or remove `ollama-gateway:k8sIngressHost`.",
    ]);
  });
});

/**
 * A stand-in for the `ollama` CLI in the image, as far as the init container uses it: `serve`
 * answers only after a start-up delay, `list` fails until it answers, `pull` needs it and can
 * fail like a pull of an unknown model does.
 */
const STANDIN_OLLAMA = `#!/bin/sh
state="$STATE"
case "$1" in
  serve) trap 'echo stopped >> "$state/log"; exit 0' TERM; sleep 1; touch "$state/up"; while :; do sleep 0.1; done ;;
  list) [ -e "$state/up" ] ;;
  pull) [ -e "$state/up" ] || { echo "could not connect to ollama server" >&2; exit 1; }
        [ "$2" != "missing:model" ] || { echo "pull model manifest: file does not exist" >&2; exit 1; }
        echo "pulled $2" >> "$state/log" ;;
  *) exit 2 ;;
esac
`;

describe("the Ollama init container's script", () => {
  const run = (models: string[]) => {
    const dir = mkdtempSync(path.join(tmpdir(), "pull-models-"));
    try {
      writeFileSync(path.join(dir, "ollama"), STANDIN_OLLAMA);
      chmodSync(path.join(dir, "ollama"), 0o755);
      const result = spawnSync("/bin/sh", ["-c", pullModelsScript(), "pull-models", ...models], {
        env: { PATH: `${dir}:/usr/bin:/bin`, STATE: dir },
        encoding: "utf8",
        timeout: 30_000,
      });
      const log = (() => {
        try {
          return readFileSync(path.join(dir, "log"), "utf8");
        } catch {
          return "";
        }
      })();
      return { status: result.status, stderr: result.stderr, log };
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  };

  it("waits for its own server, pulls every model in order, then stops the server", () => {
    const result = run(["gemma3:1b", "qwen3:0.6b"]);
    expect(result.status).toBe(0);
    expect(result.log).toBe("pulled gemma3:1b\npulled qwen3:0.6b\nstopped\n");
  });

  it("fails the pod start (non-zero) when a pull fails", () => {
    const result = run(["gemma3:1b", "missing:model", "qwen3:0.6b"]);
    expect(result.status).not.toBe(0);
    expect(result.stderr).toContain("file does not exist");
    expect(result.log).toBe("pulled gemma3:1b\nstopped\n");
  });
});
