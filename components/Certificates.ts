import * as pulumi from "@pulumi/pulumi";
import * as tls from "@pulumi/tls";

export interface SelfSignedCertificatesArgs {
  mode: "selfSigned";
  /** DNS names in the server certificate (subjectAltName); the first is also its common name. At least one. */
  dnsNames: string[];
  /** IP addresses in the server certificate. Default none. */
  ipAddresses?: string[];
  /** Server certificate lifetime. Default 8760 hours (one year). */
  validityPeriodHours?: number;
  /** Within this many hours of expiry, the next `pulumi up` issues a new certificate. Default 720 (30 days). */
  earlyRenewalHours?: number;
  /** Lifetime of the private CA. Default 87600 hours (ten years). */
  caValidityPeriodHours?: number;
}

export interface ProvidedCertificatesArgs {
  mode: "provided";
  /** Server certificate, followed by its intermediates (PEM). */
  certPem: pulumi.Input<string>;
  /** Its private key (PEM); kept secret. */
  keyPem: pulumi.Input<string>;
  /** What clients should trust, for `caCertPem`. Default: `certPem` itself. */
  caCertPem?: pulumi.Input<string>;
}

export type CertificatesArgs = SelfSignedCertificatesArgs | ProvidedCertificatesArgs;

/**
 * The proxy's TLS material: a private CA and a server certificate it signs (`selfSigned`), or
 * a certificate and key brought from elsewhere (`provided`, no TLS resources at all).
 */
export class Certificates extends pulumi.ComponentResource {
  /** Server certificate (chain), PEM. */
  public readonly certPem: pulumi.Output<string>;
  /** Server private key, PEM; secret. */
  public readonly keyPem: pulumi.Output<string>;
  /** What a client trusts: the private CA, or the provided chain. */
  public readonly caCertPem: pulumi.Output<string>;

  constructor(name: string, args: CertificatesArgs, opts?: pulumi.ComponentResourceOptions) {
    super("ollama-gateway:index:Certificates", name, {}, opts);

    if (args.mode === "provided") {
      this.certPem = pulumi.output(args.certPem);
      this.keyPem = pulumi.secret(args.keyPem);
      this.caCertPem = pulumi.output(args.caCertPem ?? args.certPem);
    } else {
      if (args.dnsNames.length === 0) throw new pulumi.ResourceError("`dnsNames` is empty; give at least one DNS name.", this);
      const a = { ipAddresses: [], validityPeriodHours: 8760, earlyRenewalHours: 720, caValidityPeriodHours: 87600, ...args };

      const caKey = new tls.PrivateKey(`${name}-ca-key`, { algorithm: "ECDSA", ecdsaCurve: "P256" }, { parent: this });
      const ca = new tls.SelfSignedCert(
        `${name}-ca`,
        {
          privateKeyPem: caKey.privateKeyPem,
          isCaCertificate: true,
          subject: { commonName: `${name} private CA`, organization: "ollama-gateway" },
          validityPeriodHours: a.caValidityPeriodHours,
          allowedUses: ["cert_signing", "crl_signing", "digital_signature"],
        },
        { parent: this },
      );
      const serverKey = new tls.PrivateKey(`${name}-server-key`, { algorithm: "ECDSA", ecdsaCurve: "P256" }, { parent: this });
      const request = new tls.CertRequest(
        `${name}-server-csr`,
        {
          privateKeyPem: serverKey.privateKeyPem,
          subject: { commonName: a.dnsNames[0], organization: "ollama-gateway" },
          dnsNames: a.dnsNames,
          ipAddresses: a.ipAddresses,
        },
        { parent: this },
      );
      const server = new tls.LocallySignedCert(
        `${name}-server`,
        {
          certRequestPem: request.certRequestPem,
          caPrivateKeyPem: caKey.privateKeyPem,
          caCertPem: ca.certPem,
          validityPeriodHours: a.validityPeriodHours,
          earlyRenewalHours: a.earlyRenewalHours,
          allowedUses: ["digital_signature", "key_encipherment", "server_auth"],
        },
        { parent: this },
      );
      this.certPem = server.certPem;
      this.keyPem = pulumi.secret(serverKey.privateKeyPem);
      this.caCertPem = ca.certPem;
    }

    this.registerOutputs({ certPem: this.certPem, keyPem: this.keyPem, caCertPem: this.caCertPem });
  }
}
