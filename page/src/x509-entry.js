// The one library the page needs: CSR creation and certificate parsing,
// on top of the browser's WebCrypto.  Bundled by `make page-bundle` into
// page/x509.bundle.js (global tsbX509), committed, served by nginx.
import "reflect-metadata";
export {
    Pkcs10CertificateRequestGenerator,
    Pkcs10CertificateRequest,
    X509Certificate,
    SubjectAlternativeNameExtension,
    KeyUsagesExtension,
    KeyUsageFlags,
    ExtendedKeyUsageExtension,
    PemConverter,
    cryptoProvider,
} from "@peculiar/x509";
