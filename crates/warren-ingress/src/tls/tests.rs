//! Tests of [`super`].
use super::*;
use std::os::unix::fs::PermissionsExt;

const DAY: Duration = Duration::from_secs(24 * 60 * 60);

fn now() -> SystemTime {
    // A fixed instant, so the tests do not depend on the clock: 2026-01-01T00:00:00Z.
    UNIX_EPOCH + Duration::from_secs(1_767_225_600)
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn renewal_decision_by_time() {
    let t = now();
    let issued = |days_ago: u32| (t - days_ago * DAY, t - days_ago * DAY + LEAF_VALIDITY);
    let (nb, na) = issued(10);
    assert_eq!(time_renewal(nb, na, t), None);
    let (nb, na) = issued(59);
    assert_eq!(time_renewal(nb, na, t), None, "31 days left");
    let (nb, na) = issued(60);
    assert_eq!(
        time_renewal(nb, na, t),
        Some(Renewal::ExpiresSoon),
        "30 days left"
    );
    let (nb, na) = issued(80);
    assert_eq!(time_renewal(nb, na, t), Some(Renewal::ExpiresSoon));
    let (nb, na) = issued(200);
    assert_eq!(
        time_renewal(nb, na, t),
        Some(Renewal::ExpiresSoon),
        "expired"
    );
    // Issued in the future (the clock went back): not valid yet, so reissued.
    assert_eq!(
        time_renewal(t + DAY, t + LEAF_VALIDITY, t),
        Some(Renewal::NotYetValid)
    );
    assert_eq!(renew_at(t + LEAF_VALIDITY), t + 60 * DAY);
}

#[test]
fn file_stems() {
    assert_eq!(cert_file_stem("app.home.arpa").unwrap(), "app.home.arpa");
    assert_eq!(
        cert_file_stem("*.home.arpa").unwrap(),
        "_wildcard.home.arpa"
    );
}

#[test]
fn unsafe_domains_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ca = LocalCa::load_or_create(dir.path(), now()).unwrap();
    for bad in [
        "../etc/passwd",
        "a/b.home.arpa",
        "..",
        "a..b",
        "/abs.home.arpa",
        "",
        "_wildcard.home.arpa",
        "App.home.arpa",
        "a.home.arpa\0",
    ] {
        let err = ca.ensure_cert(bad, now()).unwrap_err();
        assert!(matches!(err, TlsError::Domain { .. }), "{bad:?}: {err}");
        assert!(cert_file_stem(bad).is_err(), "{bad:?}");
    }
    // Nothing was written outside (or inside) the CA directory for them.
    assert!(!dir.path().join(CERTS).exists());
    assert!(!dir.path().parent().unwrap().join("etc").exists());
}

#[test]
fn create_then_load_the_same_ca() {
    let dir = tempfile::tempdir().unwrap();
    let ca_dir = dir.path().join("tls");
    let ca = LocalCa::load_or_create(&ca_dir, now()).unwrap();
    assert_eq!(mode(&ca_dir), 0o700);
    assert_eq!(mode(&ca_dir.join(CA_KEY)), 0o600);
    assert!(ca.cert_pem().starts_with("-----BEGIN CERTIFICATE-----\n"));
    assert_eq!(fs::read_to_string(ca.cert_path()).unwrap(), ca.cert_pem());
    let x509 = parse_der(&ca.cert_der).unwrap();
    let bc = x509.basic_constraints().unwrap().unwrap();
    assert!(bc.critical && bc.value.ca);
    assert_eq!(bc.value.path_len_constraint, Some(0));
    let ku = x509.key_usage().unwrap().unwrap().value;
    assert!(ku.key_cert_sign() && ku.crl_sign() && !ku.digital_signature());
    let cn = x509.subject().iter_common_name().next().unwrap();
    assert!(
        cn.as_str().unwrap().starts_with("warren local CA "),
        "{:?}",
        cn.as_str()
    );
    let not_after = asn1_to_system(x509.validity().not_after.timestamp());
    assert_eq!(not_after, now() + CA_VALIDITY);
    // No temporary files are left behind.
    let names: Vec<_> = fs::read_dir(&ca_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");

    let again = LocalCa::load_or_create(&ca_dir, now() + DAY).unwrap();
    assert_eq!(again.cert_pem(), ca.cert_pem());
    // A leaf issued by the reloaded CA chains to the same certificate.
    let (cert, _key, issued) = again.ensure_cert("app.home.arpa", now() + DAY).unwrap();
    assert!(issued);
    let (same_cert, _key, issued) = ca.ensure_cert("app.home.arpa", now() + DAY).unwrap();
    assert_eq!(cert, same_cert);
    assert!(
        !issued,
        "the first handle accepts what the reloaded one issued"
    );
}

#[test]
fn corrupt_ca_key_is_an_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let ca = LocalCa::load_or_create(dir.path(), now()).unwrap();
    let key = dir.path().join(CA_KEY);
    let before = fs::read(&key).unwrap();
    fs::write(
        &key,
        "-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    let err = LocalCa::load_or_create(dir.path(), now()).unwrap_err();
    assert!(matches!(err, TlsError::Key { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains(&key.display().to_string()), "{msg}");
    // Not PEM at all.
    fs::write(&key, "garbage").unwrap();
    let err = LocalCa::load_or_create(dir.path(), now()).unwrap_err();
    assert!(matches!(err, TlsError::Key { .. }), "{err:?}");
    // The CA certificate is never replaced because of a bad key.
    assert_eq!(fs::read_to_string(ca.cert_path()).unwrap(), ca.cert_pem());

    // A valid key of another CA: a mismatch, naming both files.
    let other = tempfile::tempdir().unwrap();
    LocalCa::load_or_create(other.path(), now()).unwrap();
    fs::copy(other.path().join(CA_KEY), &key).unwrap();
    let err = LocalCa::load_or_create(dir.path(), now()).unwrap_err();
    assert!(matches!(err, TlsError::KeyMismatch { .. }), "{err:?}");
    assert!(err.to_string().contains(CA_KEY), "{err}");

    // A missing key with an existing certificate is refused, not regenerated.
    fs::remove_file(&key).unwrap();
    let err = LocalCa::load_or_create(dir.path(), now()).unwrap_err();
    assert!(matches!(err, TlsError::CaKeyMissing { .. }), "{err:?}");
    assert!(!key.exists());

    // Restoring the right key makes it load again.
    fs::write(&key, before).unwrap();
    LocalCa::load_or_create(dir.path(), now()).unwrap();
}

#[test]
fn corrupt_or_foreign_ca_certificate_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let ca = LocalCa::load_or_create(dir.path(), now()).unwrap();
    fs::write(ca.cert_path(), "not pem").unwrap();
    let err = LocalCa::load_or_create(dir.path(), now()).unwrap_err();
    assert!(matches!(err, TlsError::Certificate { .. }), "{err:?}");
    assert!(err.to_string().contains("ca.crt"), "{err}");

    // A leaf certificate in place of the CA certificate is not a CA.
    let (leaf, _, _) = ca.ensure_cert("x.home.arpa", now()).unwrap();
    fs::copy(&leaf, ca.cert_path()).unwrap();
    let err = LocalCa::load_or_create(dir.path(), now()).unwrap_err();
    assert!(matches!(err, TlsError::NotCa { .. }), "{err:?}");
}

#[test]
fn expired_ca_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    LocalCa::load_or_create(dir.path(), now()).unwrap();
    let later = now() + CA_VALIDITY + DAY;
    let err = LocalCa::load_or_create(dir.path(), later).unwrap_err();
    assert!(matches!(err, TlsError::CaExpired { .. }), "{err:?}");
    assert!(err.to_string().contains("2035-12-30"), "{err}");
}

#[test]
fn a_key_without_certificate_is_an_interrupted_creation() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join(CA_KEY), "half-written").unwrap();
    let ca = LocalCa::load_or_create(dir.path(), now()).unwrap();
    assert!(fs::read_to_string(dir.path().join(CA_KEY))
        .unwrap()
        .starts_with("-----BEGIN PRIVATE KEY-----"));
    assert_eq!(mode(&dir.path().join(CA_KEY)), 0o600);
    let again = LocalCa::load_or_create(dir.path(), now()).unwrap();
    assert_eq!(again.cert_pem(), ca.cert_pem());
}

#[test]
fn leaf_renewal_reasons() {
    let dir = tempfile::tempdir().unwrap();
    let ca = LocalCa::load_or_create(dir.path(), now()).unwrap();
    let d = "app.home.arpa";
    let (cert, key) = ca.leaf_paths(d).unwrap();
    let reason = |t| ca.renewal_reason(&cert, &key, d, t);
    assert_eq!(reason(now()), Some(Renewal::Missing));

    let (c, k, issued) = ca.ensure_cert(d, now()).unwrap();
    assert!(issued && c == cert && k == key);
    assert_eq!(mode(&key), 0o600);
    assert_eq!(mode(&dir.path().join(CERTS)), 0o700);
    assert_eq!(reason(now()), None);
    assert_eq!(reason(now() + 59 * DAY), None);
    assert_eq!(reason(now() + 61 * DAY), Some(Renewal::ExpiresSoon));
    assert_eq!(reason(now() - 2 * DAY), Some(Renewal::NotYetValid));
    assert_eq!(
        ca.renewal_reason(&cert, &key, "other.home.arpa", now()),
        Some(Renewal::DomainNotCovered)
    );
    assert_eq!(
        cert_not_after(&cert).unwrap(),
        now() + LEAF_VALIDITY,
        "90 days"
    );

    // The chain file holds the leaf and then the CA certificate.
    let chain = fs::read_to_string(&cert).unwrap();
    assert_eq!(chain.matches("-----BEGIN CERTIFICATE-----").count(), 2);
    assert!(chain.ends_with(ca.cert_pem()));

    // The key of another certificate: mismatch.
    let (_, other_key, _) = ca.ensure_cert("other.home.arpa", now()).unwrap();
    let good_key = fs::read(&key).unwrap();
    fs::copy(&other_key, &key).unwrap();
    assert_eq!(reason(now()), Some(Renewal::KeyMismatch));
    fs::write(&key, &good_key).unwrap();
    fs::remove_file(&key).unwrap();
    assert!(matches!(reason(now()), Some(Renewal::Unreadable(_))));
    fs::write(&key, &good_key).unwrap();
    assert_eq!(reason(now()), None);

    // A certificate of another CA for the same domain.
    let d2 = tempfile::tempdir().unwrap();
    let other_ca = LocalCa::load_or_create(d2.path(), now()).unwrap();
    let (foreign_cert, foreign_key, _) = other_ca.ensure_cert(d, now()).unwrap();
    fs::copy(&foreign_cert, &cert).unwrap();
    fs::copy(&foreign_key, &key).unwrap();
    assert_eq!(reason(now()), Some(Renewal::OtherIssuer));
    let (_, _, issued) = ca.ensure_cert(d, now()).unwrap();
    assert!(issued);
    assert_eq!(reason(now()), None);

    // Garbage in the certificate file.
    fs::write(&cert, "garbage").unwrap();
    assert!(matches!(reason(now()), Some(Renewal::Unreadable(_))));
}

#[test]
fn wildcard_certificate_is_stored_under_a_safe_name() {
    let dir = tempfile::tempdir().unwrap();
    let ca = LocalCa::load_or_create(dir.path(), now()).unwrap();
    let (cert, key, issued) = ca.ensure_cert("*.home.arpa", now()).unwrap();
    assert!(issued);
    assert_eq!(cert, dir.path().join("certs/_wildcard.home.arpa.crt"));
    assert_eq!(key, dir.path().join("certs/_wildcard.home.arpa.key"));
    let bytes = fs::read(&cert).unwrap();
    let der = first_certificate(&cert, &bytes).unwrap();
    let x509 = parse_der(&der).unwrap();
    assert!(covers(&x509, "*.home.arpa"));
    assert!(!covers(&x509, "home.arpa"));
    let (_, _, issued) = ca.ensure_cert("*.home.arpa", now() + DAY).unwrap();
    assert!(!issued);
}

#[test]
fn der_lengths() {
    assert_eq!(der_tlv(0x04, &[1, 2]), vec![0x04, 2, 1, 2]);
    let long = der_tlv(0x04, &[0; 200]);
    assert_eq!(&long[..3], &[0x04, 0x81, 200]);
    let longer = der_tlv(0x30, &[0; 300]);
    assert_eq!(&longer[..4], &[0x30, 0x82, 0x01, 0x2c]);
}

#[test]
fn pem_encoding_round_trips() {
    for len in [0usize, 1, 2, 3, 47, 48, 49, 100] {
        let data: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
        let text = pem_encode("CERTIFICATE", &data);
        let block = Pem::iter_from_buffer(text.as_bytes())
            .next()
            .unwrap()
            .unwrap();
        assert_eq!(block.contents, data, "{len}");
        assert!(text.lines().all(|l| l.len() <= 64));
    }
}
