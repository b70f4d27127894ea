//! PayPal certificates fetched per request (only from PayPal's certificate URLs),
//! checked (name, dates, chain), cached; fetches bounded whatever requests arrive.
#![cfg(feature = "paypal-fetch")]

use std::{
    collections::{HashMap, HashSet},
    sync::{
        Arc, LazyLock, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use base64::Engine as _;
use bytes::Bytes;
use hookguard::{
    clock::{Clock as _, ManualClock},
    guard::Guard,
    inbox::{Inbox, MemoryInbox},
    paypal_fetch::{CertificateFetcher, NEW_URL_BURST, NEW_URL_EVERY, PayPalCertificates},
    replay::BoxFuture,
};
use rsa::{
    PrivateKey,
    pkcs1v15::SigningKey,
    pkcs8::DecodePrivateKey as _,
    signature::{SignatureEncoding as _, Signer as _},
};
use rustls::pki_types::{PrivatePkcs8KeyDer, pem::PemObject as _};
use sha2::Sha256;
use time::{OffsetDateTime, format_description::well_known::Rfc3339};

/// PayPal's sandbox certificate and delivery (the Java SDK's test vector); the
/// certificate's chain is not at hand, so it is pinned where it is fetched.
const CERT: &str = include_str!("../src/providers/testdata/paypal_cert.pem");
const BODY: &[u8] = include_bytes!("../src/providers/testdata/paypal_body.json");
const CERT_URL: &str =
    "https://api.sandbox.paypal.com/v1/notifications/certs/CERT-360caa42-fca2a594-1d93a270";
const SIG: &str = "K7DF5+hOyGS6v0xTZ9PkEO+BFNQmpryxw2hFlXbHgmxpu+883ldEC9HcL6ccEmB8sfy80y/Q3qcZZL1MR8Qi0e1ysylVj/yROgKK6zBsQPoNmgXC8yTiNoAjULuhk5Aoau0Itk3nrkgAfji1zvADlErMFM9VZe2nDvhM3nDMLjCi/K5fRjWp3eGo6Nx17GX/WIEibeKDyS+YdJMex3i+KO4aWmm9zznC/FJ5Y/ntd0MxOJNrM0r0f3y7c3e3sO5pB3oPgN6KzKVS5P6AWHqtS8acD3DjgCKZ1uqKz7q954G1aBz2/m0wRGOFFsv0/D3FE2uIheRRmoQtVSOAX7Aupg==";
const WEBHOOK_ID: &str = "0FV983392A0531201";

/// Where the test PKI's certificates are served (a live PayPal certificate URL's form).
const LIVE_URL: &str = "https://api.paypal.com/v1/notifications/certs/CERT-360caa42-fca2a594-7e57c0de";

/// The test vector's transmission time, 2019-08-29T10:49:33Z: within the validity of
/// the vector's certificate and of `LIVE`.
const SENT: i64 = 1_567_075_773;
/// `LIVE`'s `notBefore` and `notAfter`: 2019-08-01T00:00:00Z, 2019-09-30T00:00:00Z.
const LIVE_NOT_BEFORE: i64 = 1_564_617_600;
const LIVE_NOT_AFTER: i64 = 1_569_801_600;

// A test PKI made with `openssl ca` for these tests: a root, an intermediate, and leaf
// certificates (one RSA key) that differ in name, issuer and dates.

/// The test root CA (2019-01-01 to 2039-01-01).
const ROOT: &str = "\
-----BEGIN CERTIFICATE-----\n\
MIIDLjCCAhagAwIBAgICEAAwDQYJKoZIhvcNAQELBQAwODEcMBoGA1UEAwwTaG9v\n\
a2d1YXJkIHRlc3Qgcm9vdDEYMBYGA1UECgwPaG9va2d1YXJkIHRlc3RzMB4XDTE5\n\
MDEwMTAwMDAwMFoXDTM5MDEwMTAwMDAwMFowODEcMBoGA1UEAwwTaG9va2d1YXJk\n\
IHRlc3Qgcm9vdDEYMBYGA1UECgwPaG9va2d1YXJkIHRlc3RzMIIBIjANBgkqhkiG\n\
9w0BAQEFAAOCAQ8AMIIBCgKCAQEA2pqWN2UZ2fvKm2XoxG2cxga+r21yclOZQ2Yr\n\
OZBeta+TYgENRMKFacAcA2zsB9N4A/Vj3Vra0qaFAG0NeetxroXIJ1YU6ltF8jDk\n\
Y22nKBWME4bS6BvjjD5s9zcYckJY2DTJ7DWOhXWTX4Rm/hPtgqJnjtV2EYcnn80M\n\
MFhwFH3ir0BP+mUqOPmyBPrtvDgWR9GDGFmRTE95lJ4t2xPqsSSfd8Ogu2VfswBf\n\
E+ziKYTa8VBAhN5Y9Cmb+r8vTtTHE5iiE5H6+qAOJlbnBN2OLNGxBA1a5cRb2qdb\n\
nBrE5h/QcCzkuTCcTszVU8WYXP0VZTtr15LRqLQBG3YRMA+a5wIDAQABo0IwQDAP\n\
BgNVHRMBAf8EBTADAQH/MA4GA1UdDwEB/wQEAwIBBjAdBgNVHQ4EFgQU9NOCYK2n\n\
qRK4LZ/k5qsWQieTwZ8wDQYJKoZIhvcNAQELBQADggEBAL+j3G+xzZXd53bcWEc2\n\
FFQrh5NgSL2p+SgKqRqvZhvZBRjzBwFENIwmiyjUJTGyRtWaeau9iJx8b4VeMqeW\n\
Y8GXcAm0zKtgbsY6yPaXh79SWvpPqDUuFiIVoSo1KP7xRepBk5Juo5VWeo2p9Mls\n\
4IVsSKCx7YlFp3eTF04rT9Lwkw/1sd1PFGt/KdMdFJ1Lm2CnsQEMyfVQ4/e9tagS\n\
ie8hJ8hJXi3RmzaTX09iyLQgBogrIgq8X+lgg6bAaWoQKcu5/lzwzQx3aq6T2woM\n\
BQ1Tk4qFbgwGLVbklRKsggUyRQMS6UMVqptwK/xuyzeOAt8RaEJo2mvdgIFXY6ux\n\
8cA=\n\
-----END CERTIFICATE-----\n\
";

/// The test intermediate CA, issued by `ROOT` (2019-01-01 to 2039-01-01).
const INTERMEDIATE: &str = "\
-----BEGIN CERTIFICATE-----\n\
MIIDWjCCAkKgAwIBAgICEAEwDQYJKoZIhvcNAQELBQAwODEcMBoGA1UEAwwTaG9v\n\
a2d1YXJkIHRlc3Qgcm9vdDEYMBYGA1UECgwPaG9va2d1YXJkIHRlc3RzMB4XDTE5\n\
MDEwMTAwMDAwMFoXDTM5MDEwMTAwMDAwMFowQDEkMCIGA1UEAwwbaG9va2d1YXJk\n\
IHRlc3QgaW50ZXJtZWRpYXRlMRgwFgYDVQQKDA9ob29rZ3VhcmQgdGVzdHMwggEi\n\
MA0GCSqGSIb3DQEBAQUAA4IBDwAwggEKAoIBAQC7NJHlQW/2LjISVevJjOBkm86E\n\
UYcuHrXjePf7XXd9eM0AVnWMO2RepDF04Bfz9BGxUqMgSOA5k8Ce+MJEBjp/4Tj5\n\
49+0bXNgwYKHAGaABuu4pHVbOzJm2p0mF97Ejx0x8+/Z02Y8N3Tb6hoziuUJzKXW\n\
d8miustaV9EYbndcqsS8rMQdopjALWUKnRTFwsTAd9qn5CfQtyaDWb6axQKQqf8c\n\
eUf2KwPhTWTp4r44vMjOLgBEayyWwT4aIUz+AXOAohNIkjqPLMQJIfauo5hPk1Ru\n\
856d8/hWswV+x+TOeXJbEoEfS5oGxNB8cUml3h0rCpGZ3lJbFKXCW3Soa+CdAgMB\n\
AAGjZjBkMBIGA1UdEwEB/wQIMAYBAf8CAQAwDgYDVR0PAQH/BAQDAgEGMB0GA1Ud\n\
DgQWBBTbrfL6zm1NivJiAyBB727fiMMlkjAfBgNVHSMEGDAWgBT004JgraepErgt\n\
n+TmqxZCJ5PBnzANBgkqhkiG9w0BAQsFAAOCAQEACJUa4/CydmevqnUHOJ4L8x/n\n\
cnSa765KQz0QOTm0CtRgNpiRnEiJUrwG3sqaMc5KxrduNOVXnNzXRsOOH4gb5zv5\n\
p/POL6xvEZc6+zwISZtlqSq1pcAnlMksjcF8sxDdqovW9pfcC9hR1qGLhX/rLyYL\n\
iQR2ILbjicD++H2ZN/lftq4MgIpeYcZ5Kf7Fq7yItxYBtL89KTKLxsygMI7I59vp\n\
MXnXa0hni/jaAqhprdCw+RdpAI8rvgzfAKsz5G0hFGPaJHjjyYowPz1UqOS/YmcC\n\
cAmUPQjbCvGYf1Hjgj6xLpbACTOZCckDYgSpkfwFXWFBpeC+SMcLQR3GodRgWQ==\n\
-----END CERTIFICATE-----\n\
";

/// `messageverificationcerts.paypal.com` (CN and DNS SAN), issued by `INTERMEDIATE`, 2019-08-01 to 2019-09-30.
const LIVE: &str = "\
-----BEGIN CERTIFICATE-----\n\
MIIDsjCCApqgAwIBAgICEAIwDQYJKoZIhvcNAQELBQAwQDEkMCIGA1UEAwwbaG9v\n\
a2d1YXJkIHRlc3QgaW50ZXJtZWRpYXRlMRgwFgYDVQQKDA9ob29rZ3VhcmQgdGVz\n\
dHMwHhcNMTkwODAxMDAwMDAwWhcNMTkwOTMwMDAwMDAwWjBFMSwwKgYDVQQDDCNt\n\
ZXNzYWdldmVyaWZpY2F0aW9uY2VydHMucGF5cGFsLmNvbTEVMBMGA1UECgwMUGF5\n\
UGFsLCBJbmMuMIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA2678vNQa\n\
mi0BhrLK5VZK5VzlA+oldoQSknHOX56FjgoW5mcGxO5WJX3S79PaYbA59+lcG65D\n\
Bt64wiT81NBCsj70GsRxlbyWSFSquWnQtV+RUa7MLk9PeBA2Y/UCAuB0GJVJXVoy\n\
9dltofo8B566NY7qQvtw/0uuMK2JoSCwGPCtReeIY+fn9pV/WNMKLaiB4pwa4mzq\n\
D+6MDsj9wmHaOpmGYCq5xG7vSURywBauXNRRYNG+hZF+qYKzGp+/76la63f36kFt\n\
vgXsx6j+52voYJA18Moi8xfjVLn0DU8KE+PSNskm1CKoglHCTPwi8Qk9EDHELPxk\n\
cfT71Xxvz8CpXwIDAQABo4GwMIGtMAwGA1UdEwEB/wQCMAAwDgYDVR0PAQH/BAQD\n\
AgWgMB0GA1UdJQQWMBQGCCsGAQUFBwMBBggrBgEFBQcDAjAuBgNVHREEJzAlgiNt\n\
ZXNzYWdldmVyaWZpY2F0aW9uY2VydHMucGF5cGFsLmNvbTAfBgNVHSMEGDAWgBTb\n\
rfL6zm1NivJiAyBB727fiMMlkjAdBgNVHQ4EFgQU/JeOhEZgwq7j9N58coyJZE1r\n\
nccwDQYJKoZIhvcNAQELBQADggEBAF+AB9RdSQXFQ6j0yJ/l+vMzvtatfIYX2X4k\n\
qyK7E2DWHcNby8hAm5v+LOXONelTfl+fn/oaoRmvfNzlE3DWyPSLRAp8RUVSx+3r\n\
Oe1jMmp6NfCKUlUN/36oVuSX5GTUYgtggNhbE5/Gme6+5ahCidB+9eajQD6FjCPy\n\
Pe0B073jAqt7MAHe1kMdjHc7v1vtiStXv2UXCrONoZ0OwKOUJbuPaH0HLasqufYY\n\
mM/qSVlvWb53RlUzeZc11RynVvkeLzkh27ub+7UtCjlfWgAwwwAMxwNNVkQBogfT\n\
Kw29Syy8g/a4l1M3VZZPNa8y190yxt6uF4PpENUIOVjY4XxdiFc=\n\
-----END CERTIFICATE-----\n\
";

/// `LIVE` renewed: the same name and key, 2019-09-15 to 2019-12-31.
const RENEWED: &str = "\
-----BEGIN CERTIFICATE-----\n\
MIIDsjCCApqgAwIBAgICEAcwDQYJKoZIhvcNAQELBQAwQDEkMCIGA1UEAwwbaG9v\n\
a2d1YXJkIHRlc3QgaW50ZXJtZWRpYXRlMRgwFgYDVQQKDA9ob29rZ3VhcmQgdGVz\n\
dHMwHhcNMTkwOTE1MDAwMDAwWhcNMTkxMjMxMDAwMDAwWjBFMSwwKgYDVQQDDCNt\n\
ZXNzYWdldmVyaWZpY2F0aW9uY2VydHMucGF5cGFsLmNvbTEVMBMGA1UECgwMUGF5\n\
UGFsLCBJbmMuMIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA2678vNQa\n\
mi0BhrLK5VZK5VzlA+oldoQSknHOX56FjgoW5mcGxO5WJX3S79PaYbA59+lcG65D\n\
Bt64wiT81NBCsj70GsRxlbyWSFSquWnQtV+RUa7MLk9PeBA2Y/UCAuB0GJVJXVoy\n\
9dltofo8B566NY7qQvtw/0uuMK2JoSCwGPCtReeIY+fn9pV/WNMKLaiB4pwa4mzq\n\
D+6MDsj9wmHaOpmGYCq5xG7vSURywBauXNRRYNG+hZF+qYKzGp+/76la63f36kFt\n\
vgXsx6j+52voYJA18Moi8xfjVLn0DU8KE+PSNskm1CKoglHCTPwi8Qk9EDHELPxk\n\
cfT71Xxvz8CpXwIDAQABo4GwMIGtMAwGA1UdEwEB/wQCMAAwDgYDVR0PAQH/BAQD\n\
AgWgMB0GA1UdJQQWMBQGCCsGAQUFBwMBBggrBgEFBQcDAjAuBgNVHREEJzAlgiNt\n\
ZXNzYWdldmVyaWZpY2F0aW9uY2VydHMucGF5cGFsLmNvbTAfBgNVHSMEGDAWgBTb\n\
rfL6zm1NivJiAyBB727fiMMlkjAdBgNVHQ4EFgQU/JeOhEZgwq7j9N58coyJZE1r\n\
nccwDQYJKoZIhvcNAQELBQADggEBALHh67FaitZKuh4kh6x/FqpdW1pbOtqv9P7x\n\
MJKic2ivqvUDF4/fs5HvpT7CBX+YxR+unxlasMViKjgtOXzCGn0539zSidRxRrXq\n\
Cn84JCIZf94YKzjv2or+wrp2zHUmxttlLlC+OIHJdfdtJKodGAMv2Tm5btSjM74d\n\
hwtVGO9WkitreNrJpK3JCw3aVqV8FW1Xtf5MIh9Ge6wBfu08RcAkyehTjNETHMK/\n\
hOebqipRMM3dd/uJHf0+brvbGAcycNcN0TWOjF8l/N9NLyswd5713+VFvjCK1Fmz\n\
vqYU2K6NqmVvDW5TRcrWGS4GQblaVlePsI0wt1Vwu/paxKRq5iM=\n\
-----END CERTIFICATE-----\n\
";

/// What a forger makes: `LIVE`'s name and key, self-signed, the same dates.
const SELF_SIGNED: &str = "\
-----BEGIN CERTIFICATE-----\n\
MIIDljCCAn6gAwIBAgICEAYwDQYJKoZIhvcNAQELBQAwRTEsMCoGA1UEAwwjbWVz\n\
c2FnZXZlcmlmaWNhdGlvbmNlcnRzLnBheXBhbC5jb20xFTATBgNVBAoMDFBheVBh\n\
bCwgSW5jLjAeFw0xOTA4MDEwMDAwMDBaFw0xOTA5MzAwMDAwMDBaMEUxLDAqBgNV\n\
BAMMI21lc3NhZ2V2ZXJpZmljYXRpb25jZXJ0cy5wYXlwYWwuY29tMRUwEwYDVQQK\n\
DAxQYXlQYWwsIEluYy4wggEiMA0GCSqGSIb3DQEBAQUAA4IBDwAwggEKAoIBAQDb\n\
rvy81BqaLQGGssrlVkrlXOUD6iV2hBKScc5fnoWOChbmZwbE7lYlfdLv09phsDn3\n\
6VwbrkMG3rjCJPzU0EKyPvQaxHGVvJZIVKq5adC1X5FRrswuT094EDZj9QIC4HQY\n\
lUldWjL12W2h+jwHnro1jupC+3D/S64wrYmhILAY8K1F54hj5+f2lX9Y0wotqIHi\n\
nBribOoP7owOyP3CYdo6mYZgKrnEbu9JRHLAFq5c1FFg0b6FkX6pgrMan7/vqVrr\n\
d/fqQW2+BezHqP7na+hgkDXwyiLzF+NUufQNTwoT49I2ySbUIqiCUcJM/CLxCT0Q\n\
McQs/GRx9PvVfG/PwKlfAgMBAAGjgY8wgYwwDAYDVR0TAQH/BAIwADAOBgNVHQ8B\n\
Af8EBAMCBaAwHQYDVR0lBBYwFAYIKwYBBQUHAwEGCCsGAQUFBwMCMC4GA1UdEQQn\n\
MCWCI21lc3NhZ2V2ZXJpZmljYXRpb25jZXJ0cy5wYXlwYWwuY29tMB0GA1UdDgQW\n\
BBT8l46ERmDCruP03nxyjIlkTWudxzANBgkqhkiG9w0BAQsFAAOCAQEAMPtjjHsE\n\
92x6/BE0NUmBJp9WrpozKJt2PQLqHwxtGbA3xTZl9/u2z7Abr3SvwEyAriF0FWGJ\n\
ZLHOc5p4hnyP6M0fCEHkWlO0zfiR2KwVLh4iA8zRm2WoLP0WzeA0qQCFg2bkVEkK\n\
gQauwIsFgCVGr3j2NboZTmkdqMwWl3NEUHh1mTsVzyhZbS+a6NrmAbJ2tTnHQwid\n\
VscHWXvo2oHL1h0kSsnyubJhlXdcmf3f6OMqlEoUxx4ay6CoVviDexL+xipM3nM/\n\
UumQcHsRXUuLpoiNtOQKCzhDMi0z0mEBwlyqdpdelEQ/Xs5BBFBEi837/Lm0crgy\n\
psQX2EjSPx7/UQ==\n\
-----END CERTIFICATE-----\n\
";

/// `evil.paypal.com`, issued by `INTERMEDIATE`, the same dates.
const EVIL: &str = "\
-----BEGIN CERTIFICATE-----\n\
MIIDijCCAnKgAwIBAgICEAMwDQYJKoZIhvcNAQELBQAwQDEkMCIGA1UEAwwbaG9v\n\
a2d1YXJkIHRlc3QgaW50ZXJtZWRpYXRlMRgwFgYDVQQKDA9ob29rZ3VhcmQgdGVz\n\
dHMwHhcNMTkwODAxMDAwMDAwWhcNMTkwOTMwMDAwMDAwWjAxMRgwFgYDVQQDDA9l\n\
dmlsLnBheXBhbC5jb20xFTATBgNVBAoMDFBheVBhbCwgSW5jLjCCASIwDQYJKoZI\n\
hvcNAQEBBQADggEPADCCAQoCggEBANuu/LzUGpotAYayyuVWSuVc5QPqJXaEEpJx\n\
zl+ehY4KFuZnBsTuViV90u/T2mGwOffpXBuuQwbeuMIk/NTQQrI+9BrEcZW8lkhU\n\
qrlp0LVfkVGuzC5PT3gQNmP1AgLgdBiVSV1aMvXZbaH6PAeeujWO6kL7cP9LrjCt\n\
iaEgsBjwrUXniGPn5/aVf1jTCi2ogeKcGuJs6g/ujA7I/cJh2jqZhmAqucRu70lE\n\
csAWrlzUUWDRvoWRfqmCsxqfv++pWut39+pBbb4F7Meo/udr6GCQNfDKIvMX41S5\n\
9A1PChPj0jbJJtQiqIJRwkz8IvEJPRAxxCz8ZHH0+9V8b8/AqV8CAwEAAaOBnDCB\n\
mTAMBgNVHRMBAf8EAjAAMA4GA1UdDwEB/wQEAwIFoDAdBgNVHSUEFjAUBggrBgEF\n\
BQcDAQYIKwYBBQUHAwIwGgYDVR0RBBMwEYIPZXZpbC5wYXlwYWwuY29tMB8GA1Ud\n\
IwQYMBaAFNut8vrObU2K8mIDIEHvbt+IwyWSMB0GA1UdDgQWBBT8l46ERmDCruP0\n\
3nxyjIlkTWudxzANBgkqhkiG9w0BAQsFAAOCAQEABlHd5I4SlhOuTkhAfdwsxMH9\n\
DcVzUlknNHY23jKnGZsNB5kxvTxb3B4VWJ2yL35wGgFQzfTodG0QUrW5JBB50Unj\n\
CcH/IAcwQXcCzG3wmUBk3gWKqW2ARjl8g0kgzbCncyIxjXT9mpPJ/NgUKl5AXBKk\n\
enXk8vYHwDju2Itd2GEBIjFUufiLSF9Er7WjYerKMdKrIOu772MfvzsE178M11Ym\n\
A4K1GZfydemc8PeE6UeIBfRoJSLTrItKZo0AJ/L5mSHBtM7a876BJkYkqKzBp/oI\n\
gbxlGhn0I2PXWAQ/1KygtgppYrahEQlHKHqxEmMikYWloLDMu8C3hWtlxWk+Kw==\n\
-----END CERTIFICATE-----\n\
";

/// `*.paypal.com` (CN and DNS SAN), issued by `INTERMEDIATE`, the same dates.
const WILDCARD: &str = "\
-----BEGIN CERTIFICATE-----\n\
MIIDhDCCAmygAwIBAgICEAQwDQYJKoZIhvcNAQELBQAwQDEkMCIGA1UEAwwbaG9v\n\
a2d1YXJkIHRlc3QgaW50ZXJtZWRpYXRlMRgwFgYDVQQKDA9ob29rZ3VhcmQgdGVz\n\
dHMwHhcNMTkwODAxMDAwMDAwWhcNMTkwOTMwMDAwMDAwWjAuMRUwEwYDVQQDDAwq\n\
LnBheXBhbC5jb20xFTATBgNVBAoMDFBheVBhbCwgSW5jLjCCASIwDQYJKoZIhvcN\n\
AQEBBQADggEPADCCAQoCggEBANuu/LzUGpotAYayyuVWSuVc5QPqJXaEEpJxzl+e\n\
hY4KFuZnBsTuViV90u/T2mGwOffpXBuuQwbeuMIk/NTQQrI+9BrEcZW8lkhUqrlp\n\
0LVfkVGuzC5PT3gQNmP1AgLgdBiVSV1aMvXZbaH6PAeeujWO6kL7cP9LrjCtiaEg\n\
sBjwrUXniGPn5/aVf1jTCi2ogeKcGuJs6g/ujA7I/cJh2jqZhmAqucRu70lEcsAW\n\
rlzUUWDRvoWRfqmCsxqfv++pWut39+pBbb4F7Meo/udr6GCQNfDKIvMX41S59A1P\n\
ChPj0jbJJtQiqIJRwkz8IvEJPRAxxCz8ZHH0+9V8b8/AqV8CAwEAAaOBmTCBljAM\n\
BgNVHRMBAf8EAjAAMA4GA1UdDwEB/wQEAwIFoDAdBgNVHSUEFjAUBggrBgEFBQcD\n\
AQYIKwYBBQUHAwIwFwYDVR0RBBAwDoIMKi5wYXlwYWwuY29tMB8GA1UdIwQYMBaA\n\
FNut8vrObU2K8mIDIEHvbt+IwyWSMB0GA1UdDgQWBBT8l46ERmDCruP03nxyjIlk\n\
TWudxzANBgkqhkiG9w0BAQsFAAOCAQEAjcS/w3/ZIlZE9lKTwVPH+m3t4wWU55PN\n\
zq7WIZraQnqq+vra3AZrZ0xYFNnueXTGNA6UAXqBia3b4RSBjSfQ9u3sMXUxye7p\n\
TtHVNT3gfzWSVpkkLQE9jajImZDlVJvdr0lMzRzVZHmve+/Nnhlp7t9N85Jedl5t\n\
H8t4drBj+F9HJv+mcZP0Df3zJhcdrwWtTis9meNUU2jzQpfQCr/ahdMGNGmRBbMW\n\
Bfbd5/tMASjgdiWdh4MCpMyDtu0KfvR1PJTqdEB3MTSlEMqYiASPeRLQqw8qOSOx\n\
ZY5vKDLny3CeAkKGEtOhpYXzCjzUlQBN1u0YcozCchPxDetnWJtQLw==\n\
-----END CERTIFICATE-----\n\
";

/// CN `messageverificationcerts.sandbox.paypal.com` and no SAN, issued by `INTERMEDIATE`, the same dates.
const CN_ONLY: &str = "\
-----BEGIN CERTIFICATE-----\n\
MIIDiDCCAnCgAwIBAgICEAUwDQYJKoZIhvcNAQELBQAwQDEkMCIGA1UEAwwbaG9v\n\
a2d1YXJkIHRlc3QgaW50ZXJtZWRpYXRlMRgwFgYDVQQKDA9ob29rZ3VhcmQgdGVz\n\
dHMwHhcNMTkwODAxMDAwMDAwWhcNMTkwOTMwMDAwMDAwWjBNMTQwMgYDVQQDDCtt\n\
ZXNzYWdldmVyaWZpY2F0aW9uY2VydHMuc2FuZGJveC5wYXlwYWwuY29tMRUwEwYD\n\
VQQKDAxQYXlQYWwsIEluYy4wggEiMA0GCSqGSIb3DQEBAQUAA4IBDwAwggEKAoIB\n\
AQDbrvy81BqaLQGGssrlVkrlXOUD6iV2hBKScc5fnoWOChbmZwbE7lYlfdLv09ph\n\
sDn36VwbrkMG3rjCJPzU0EKyPvQaxHGVvJZIVKq5adC1X5FRrswuT094EDZj9QIC\n\
4HQYlUldWjL12W2h+jwHnro1jupC+3D/S64wrYmhILAY8K1F54hj5+f2lX9Y0wot\n\
qIHinBribOoP7owOyP3CYdo6mYZgKrnEbu9JRHLAFq5c1FFg0b6FkX6pgrMan7/v\n\
qVrrd/fqQW2+BezHqP7na+hgkDXwyiLzF+NUufQNTwoT49I2ySbUIqiCUcJM/CLx\n\
CT0QMcQs/GRx9PvVfG/PwKlfAgMBAAGjfzB9MAwGA1UdEwEB/wQCMAAwDgYDVR0P\n\
AQH/BAQDAgWgMB0GA1UdJQQWMBQGCCsGAQUFBwMBBggrBgEFBQcDAjAfBgNVHSME\n\
GDAWgBTbrfL6zm1NivJiAyBB727fiMMlkjAdBgNVHQ4EFgQU/JeOhEZgwq7j9N58\n\
coyJZE1rnccwDQYJKoZIhvcNAQELBQADggEBAC/7yUiGVDt5Bqq+rmiLmfuIBCA5\n\
2gcjGoVLwe/2EtQ/hiO3yvPJB2uKNq/Ng2BIE2M4fqUMZVZZijp+R4hsj2vSdzZ8\n\
m2Ag6J8juhIQdFKblV/XwaUk7sTX3j2R4K6L2Z0qXoWaacoIhcD+CwyGs9AG7LlD\n\
oh9HjAyXpwzc2cjOS2LqqRrIG2yVcTdXbS4GkucQUJFyXD5aDk1KWF1Z3SEFFWDk\n\
dWalBcjXEnsj4lDJTp/0wUQW/YHHalRNqcprQRo5DlIwwWcu/BzpAvBzWKp7HBLF\n\
cq1DHryu3L0HJlH5nGHdtAK5NqXY78QSwExMRzryAn8v4cEC079fH+djKBs=\n\
-----END CERTIFICATE-----\n\
";

/// The private key of every test leaf certificate (PKCS#8), to sign test deliveries.
const LEAF_KEY: &str = "\
-----BEGIN PRIVATE KEY-----\n\
MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQDbrvy81BqaLQGG\n\
ssrlVkrlXOUD6iV2hBKScc5fnoWOChbmZwbE7lYlfdLv09phsDn36VwbrkMG3rjC\n\
JPzU0EKyPvQaxHGVvJZIVKq5adC1X5FRrswuT094EDZj9QIC4HQYlUldWjL12W2h\n\
+jwHnro1jupC+3D/S64wrYmhILAY8K1F54hj5+f2lX9Y0wotqIHinBribOoP7owO\n\
yP3CYdo6mYZgKrnEbu9JRHLAFq5c1FFg0b6FkX6pgrMan7/vqVrrd/fqQW2+BezH\n\
qP7na+hgkDXwyiLzF+NUufQNTwoT49I2ySbUIqiCUcJM/CLxCT0QMcQs/GRx9PvV\n\
fG/PwKlfAgMBAAECggEAXQSPfE7dAroawtOSqJ+sr8hxKgKrIS8UBBEPHpqrFzT7\n\
dExcZ+c478ACoEzWU3XAXdHgD9JuDAsjNQVfTqbuDrYsOudB5vKGuZKsBT0iQ6H3\n\
EJyQVO19CyvmM9XKp7gtQDl56n6mREXvr12arGlPlBzy4TDBLD/5vh/EvkZueegp\n\
yZULbEniBnKKlwQrk+jeX2FoDGooZJQp+bZdBTTdcxE5dDhGXpm0lA+n7VMqHXfG\n\
XbRIyViDjWM2G1CLPHuvo2WU30Uxvr77ofPNqBDtpcMNKiy/CDfQ4O6XzrxljkZa\n\
MMAqByt1o76TSHMQIhGK7NrmYQmVGS6IT6UjaxFjOQKBgQDuNU/lGYYM6XiTqgKe\n\
1Oy+Csp7/smp16A87uiVrcXhgVYCYTlJ0n0EUDWsd9fkPeVHU4aJT6uKEqOum3XN\n\
Ue1eh9CGnCm5L0OLYsva8a5hieC/MSwf/vqJRAU6YG4Jk2QpTYkKQYim1OYyjvXp\n\
mHTmuKmyn/3jTyldqcjgUOdk+QKBgQDsF3iul9vfVoX+LeMLZa6JreQ3EE4duVmj\n\
KhOlmELimOK3zmIWdJEN4RoRB/dtVKPv18C5wCNS3CM4j1uOifJShEqebFZh6Zvd\n\
lQtFYn0MaUsiQEVP5fWuhqqsCYJZ8yOLaqbXzuFimiRIADQ+fhj0+mOTSum8oMav\n\
29efO2wPFwKBgAiFD556EzlTAGUHp6BWrUD+0c8thbj1ZV3IjbkMxg8SuSjMoWfq\n\
h14oIENS5f3b2N98NUuj9dayY/hSxxvY2kyPPv4Rh8x/zEKn/fKOwlXqwIcWEyXx\n\
0LQoIqe72zOseeCgTU54mZKd+r3ELzdzpHq8EBW7czE2G5yl/fFH837BAoGAQPkk\n\
qUf5prk1HwKZ3WUaZ6GHkO/Xz65W0OSfi48fuSTCIDuYGv3xfZRZjB5ZJamJhFQo\n\
IfaSwhb7SnGJjOzB15u4vWirTT7xOkXuWCYGrAe+OareaGKs/l7pUXc8fGzBd3je\n\
eb3hoTUyju4fcqNZUvIlvT98nADTLUqfSJ8d2fkCgYEA1ni3m9kx7rSbSErl6ERC\n\
8iDg9/oX9wxMBGmGNIyYScpCnv6J586NZio0q2r3nKCID2DAx0LS/CbbJ3a2v1aK\n\
S0fbzaxv1vUxMliz/qmpUkkiiSy7AFTX1M7PapDTZWsuFl895qs9pxCGcZ6BWnvJ\n\
hFhwLnyPdtzJvkaGv8rvZT0=\n\
-----END PRIVATE KEY-----\n\
";

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A certificate server: what each URL serves, which fetches hang until released.
#[derive(Debug)]
struct Fake {
    calls: AtomicUsize,
    /// Every fetch fails.
    fail: AtomicBool,
    /// What each URL serves; others fail, unless `any` is set.
    pems: Mutex<HashMap<String, Vec<u8>>>,
    /// Served at any URL not in `pems`.
    any: Mutex<Option<Vec<u8>>>,
    /// URLs whose fetch waits for `gate`.
    hang: Mutex<HashSet<String>>,
    gate: tokio::sync::Semaphore,
}

impl Fake {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            calls: AtomicUsize::new(0),
            fail: AtomicBool::new(false),
            pems: Mutex::default(),
            any: Mutex::default(),
            hang: Mutex::default(),
            gate: tokio::sync::Semaphore::new(0),
        })
    }

    /// Serves `pem` at `url`.
    fn serving(url: &str, pem: &[&str]) -> Arc<Self> {
        let fake = Self::new();
        fake.serve(url, pem);
        fake
    }

    fn serve(&self, url: &str, pem: &[&str]) {
        self.pems.lock().unwrap().insert(url.to_owned(), pem.concat().into_bytes());
    }

    fn unserve(&self, url: &str) {
        self.pems.lock().unwrap().remove(url);
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    /// Lets every hanging fetch finish.
    fn release(&self) {
        self.gate.add_permits(1_000);
    }
}

#[derive(Debug)]
struct Shared(Arc<Fake>);

impl CertificateFetcher for Shared {
    fn fetch<'a>(&'a self, url: &'a str) -> BoxFuture<'a, Result<Vec<u8>, BoxError>> {
        Box::pin(async move {
            let fake = &self.0;
            fake.calls.fetch_add(1, Ordering::SeqCst);
            let hang = fake.hang.lock().unwrap().contains(url);
            if hang {
                let _ = fake.gate.acquire().await.unwrap();
            }
            if fake.fail.load(Ordering::SeqCst) {
                return Err("unreachable".into());
            }
            let pem =
                fake.pems.lock().unwrap().get(url).cloned().or_else(|| fake.any.lock().unwrap().clone());
            pem.ok_or_else(|| "unreachable".into())
        })
    }
}

/// A source fetching from `fake`, trusting the test root, on `clock`.
fn test_pki_source(fake: &Arc<Fake>, clock: &ManualClock) -> PayPalCertificates {
    PayPalCertificates::with_fetcher(WEBHOOK_ID, Shared(Arc::clone(fake)))
        .unwrap()
        .trust_anchors(ROOT)
        .unwrap()
        .clock(clock.clone())
}

/// A source fetching from `fake`, trusting only the test vector's certificate, on `clock`.
fn vector_source(fake: &Arc<Fake>, clock: &ManualClock) -> PayPalCertificates {
    PayPalCertificates::with_fetcher(WEBHOOK_ID, Shared(Arc::clone(fake)))
        .unwrap()
        .pin_certificates(CERT)
        .unwrap()
        .clock(clock.clone())
}

fn guard(source: PayPalCertificates, clock: &ManualClock) -> Guard {
    Guard::builder_with_source("paypal", source).clock(clock.clone()).inbox(MemoryInbox::new()).build()
}

/// The clock at the test vector's transmission time: the default tolerance refuses it
/// years later.
fn sent() -> ManualClock {
    ManualClock::at_unix(SENT)
}

/// The test vector's delivery, naming `cert_url`, under transmission id `id`.
fn request(cert_url: &str, id: &str) -> http::request::Parts {
    http::Request::post("/hooks/paypal")
        .header("paypal-transmission-id", id)
        .header("paypal-transmission-time", "2019-08-29T10:49:33Z")
        .header("paypal-transmission-sig", SIG)
        .header("paypal-cert-url", cert_url)
        .header("paypal-auth-algo", "SHA256withRSA")
        .body(())
        .unwrap()
        .into_parts()
        .0
}

/// A delivery signed with the test leaf certificates' key, sent at `secs`, naming
/// `cert_url`.
fn signed(cert_url: &str, id: &str, secs: i64) -> (http::request::Parts, Bytes) {
    let time = OffsetDateTime::from_unix_timestamp(secs).unwrap().format(&Rfc3339).unwrap();
    let body = format!(r#"{{"id":"WH-{id}","event_type":"PAYMENT.SALE.COMPLETED"}}"#);
    let message = format!("{id}|{time}|{WEBHOOK_ID}|{}", crc32fast::hash(body.as_bytes()));
    // RSA signing is slow unoptimized; the URL is not signed, so floods reuse signatures.
    static SIGNATURES: LazyLock<Mutex<HashMap<String, String>>> = LazyLock::new(Mutex::default);
    let sig = SIGNATURES
        .lock()
        .unwrap()
        .entry(message)
        .or_insert_with_key(|message| {
            let key = PrivatePkcs8KeyDer::from_pem_slice(LEAF_KEY.as_bytes()).unwrap();
            let key = SigningKey::<Sha256>::new(PrivateKey::from_pkcs8_der(key.secret_pkcs8_der()).unwrap());
            base64::engine::general_purpose::STANDARD.encode(key.sign(message.as_bytes()).to_vec())
        })
        .clone();
    let (parts, ()) = http::Request::post("/hooks/paypal")
        .header("paypal-transmission-id", id)
        .header("paypal-transmission-time", time)
        .header("paypal-transmission-sig", sig)
        .header("paypal-cert-url", cert_url)
        .header("paypal-auth-algo", "SHA256withRSA")
        .body(())
        .unwrap()
        .into_parts();
    (parts, Bytes::from(body))
}

/// The status of a delivery signed at the clock's time (see [`signed`]).
async fn status(guard: &Guard, clock: &ManualClock, cert_url: &str, id: &str) -> u16 {
    let (parts, body) = signed(cert_url, id, clock.now().unix_timestamp());
    guard.accept(&parts, body).await.status().as_u16()
}

#[tokio::test]
async fn fetched_once_then_cached_and_only_from_paypal() {
    let fake = Fake::serving(CERT_URL, &[CERT]);
    let clock = sent();
    let inbox = MemoryInbox::new();
    let source = vector_source(&fake, &clock);
    let guard = Guard::builder_with_source("paypal", source).clock(clock).inbox(inbox.clone()).build();

    let genuine = request(CERT_URL, "afa30d40-ca4a-11e9-ab68-7d4e2605c70c");
    assert_eq!(guard.accept(&genuine, Bytes::from_static(BODY)).await.status(), 202);
    assert_eq!(guard.accept(&genuine, Bytes::from_static(BODY)).await.status(), 200, "replay is a duplicate");
    assert_eq!(fake.calls(), 1, "the certificate is cached");

    let cases = [
        ("plain http", "http://api.sandbox.paypal.com/v1/notifications/certs/X"),
        ("look-alike host", "https://api.paypal.com.evil.example/v1/notifications/certs/X"),
        ("other host", "https://evil.example/cert.pem"),
        // Other PayPal hosts and paths are not where PayPal serves its certificates.
        ("other PayPal host", "https://www.paypal.com/v1/notifications/certs/X"),
        ("PayPal subdomain", "https://uploads.paypal.com/v1/notifications/certs/X"),
        ("other path", "https://api.paypal.com/v1/oauth2/token"),
        ("dot segments", "https://api.paypal.com/v1/notifications/certs/../../oauth2/token"),
        ("escapes", "https://api.paypal.com/v1/notifications/certs/%2e%2e"),
    ];
    for (name, url) in cases {
        let res = guard.accept(&request(url, "x"), Bytes::from_static(BODY)).await;
        assert_eq!(res.status(), 400, "case {name}");
    }
    assert_eq!(fake.calls(), 1, "untrusted URLs are never fetched");
    assert_eq!(inbox.depth().await.unwrap(), 1);

    // A tampered body fails verification with the cached certificate.
    let mut tampered = BODY.to_vec();
    tampered[10] ^= 1;
    let res = guard.accept(&request(CERT_URL, "other-id"), Bytes::from(tampered)).await;
    assert_eq!(res.status(), 401);
}

#[tokio::test]
async fn fetch_failure_is_a_503_so_paypal_retries() {
    let fake = Fake::new();
    fake.fail.store(true, Ordering::SeqCst);
    let clock = sent();
    let guard = guard(vector_source(&fake, &clock), &clock);
    let res = guard
        .accept(&request(CERT_URL, "afa30d40-ca4a-11e9-ab68-7d4e2605c70c"), Bytes::from_static(BODY))
        .await;
    assert_eq!(res.status(), 503);
    assert!(res.headers().contains_key("retry-after"));
}

/// A URL whose fetch failed is not fetched again for a while, however many requests name
/// it: a flood of requests naming a bogus PayPal URL costs one outbound fetch, not one each.
#[tokio::test]
async fn a_failed_fetch_is_not_repeated_for_every_request() {
    let fake = Fake::new();
    fake.fail.store(true, Ordering::SeqCst);
    let clock = sent();
    let guard = guard(vector_source(&fake, &clock), &clock);
    for n in 0..5 {
        let res = guard.accept(&request(CERT_URL, &format!("id-{n}")), Bytes::from_static(BODY)).await;
        assert_eq!(res.status(), 503, "{n}");
    }
    assert_eq!(fake.calls(), 1, "fetched once");
    // A query would make one certificate many URLs: refused before any fetch.
    let res = guard.accept(&request(&format!("{CERT_URL}?n=1"), "q"), Bytes::from_static(BODY)).await;
    assert_eq!(res.status(), 400);
    assert_eq!(fake.calls(), 1);
}

/// One URL has many spellings that `is_trusted_cert_url` accepts (host case, `HTTPS`,
/// `:443`, a trailing dot): they are one certificate, fetched once (at its plain
/// spelling), not one cache entry and one download each that flush the cache.
#[tokio::test]
async fn spellings_of_one_url_are_one_certificate() {
    let fake = Fake::serving(CERT_URL, &[CERT]);
    let clock = sent();
    let guard = guard(vector_source(&fake, &clock), &clock);
    let path = CERT_URL.strip_prefix("https://api.sandbox.paypal.com").unwrap();
    let id = "afa30d40-ca4a-11e9-ab68-7d4e2605c70c";

    // The fake serves only `CERT_URL`: this odd spelling is fetched at the plain one.
    let odd = format!("HTTPS://API.Sandbox.PayPal.COM.:443{path}");
    assert_eq!(guard.accept(&request(&odd, id), Bytes::from_static(BODY)).await.status(), 202);
    for n in 0..100u32 {
        let host: String = "api.sandbox.paypal.com"
            .chars()
            .enumerate()
            .map(|(i, c)| if i < 10 && n & (1 << i) != 0 { c.to_ascii_uppercase() } else { c })
            .collect();
        let port = if n % 3 == 0 { ":443" } else { "" };
        let dot = if n % 5 == 0 { "." } else { "" };
        let url = format!("https://{host}{dot}{port}{path}");
        let res = guard.accept(&request(&url, id), Bytes::from_static(BODY)).await;
        assert_eq!(res.status(), 200, "{url} is the cached certificate: a duplicate");
    }
    let res = guard.accept(&request(CERT_URL, id), Bytes::from_static(BODY)).await;
    assert_eq!(res.status(), 200);
    assert_eq!(fake.calls(), 1, "one certificate, one fetch");
}

/// Certificates that never verified a delivery, however many (anyone can name PayPal
/// URLs), push out one another, oldest first, but never a certificate that verified one.
#[tokio::test]
async fn unverified_certificates_never_push_out_one_that_verified() {
    let fake = Fake::new();
    *fake.any.lock().unwrap() = Some(CERT.as_bytes().to_vec());
    let clock = sent();
    let guard = guard(vector_source(&fake, &clock), &clock);
    let id = "afa30d40-ca4a-11e9-ab68-7d4e2605c70c";
    assert_eq!(guard.accept(&request(CERT_URL, id), Bytes::from_static(BODY)).await.status(), 202);

    let mut tampered = BODY.to_vec();
    tampered[10] ^= 1;
    for n in 0..200 {
        // Each new URL waits for a token of the bucket.
        clock.advance(NEW_URL_EVERY);
        let url = format!("https://api.sandbox.paypal.com/v1/notifications/certs/CERT-{n}");
        let res = guard.accept(&request(&url, id), Bytes::from(tampered.clone())).await;
        assert_eq!(res.status(), 401, "{url}");
    }
    assert_eq!(fake.calls(), 201);
    // The certificate that verified is still cached.
    assert_eq!(guard.accept(&request(CERT_URL, id), Bytes::from_static(BODY)).await.status(), 200);
    assert_eq!(fake.calls(), 201);
    // The most recent unverified ones are cached too; the oldest made room.
    let last = "https://api.sandbox.paypal.com/v1/notifications/certs/CERT-199";
    assert_eq!(guard.accept(&request(last, id), Bytes::from(tampered.clone())).await.status(), 401);
    assert_eq!(fake.calls(), 201);
    let first = "https://api.sandbox.paypal.com/v1/notifications/certs/CERT-0";
    assert_eq!(guard.accept(&request(first, id), Bytes::from(tampered)).await.status(), 401);
    assert_eq!(fake.calls(), 202);
}

/// `ttl(Duration::MAX)` does not panic, and still caches no longer than the
/// certificate's `notAfter` (2021-05-24T12:00:00Z for the test vector's).
#[tokio::test]
async fn a_ttl_of_duration_max_caches_until_not_after() {
    let fake = Fake::serving(CERT_URL, &[CERT]);
    let clock = sent();
    // The guard's clock stays at the transmission time (its tolerance); the source's
    // moves, and with a tolerance it would refuse the delivery before fetching anything.
    let source =
        vector_source(&fake, &clock).ttl(Duration::MAX).tolerance(hookguard::verify::Tolerance::NONE);
    let guard = guard(source, &sent());
    let genuine = request(CERT_URL, "afa30d40-ca4a-11e9-ab68-7d4e2605c70c");
    assert_eq!(guard.accept(&genuine, Bytes::from_static(BODY)).await.status(), 202);
    clock.set_unix(1_621_857_599);
    assert_eq!(guard.accept(&genuine, Bytes::from_static(BODY)).await.status(), 200);
    assert_eq!(fake.calls(), 1, "cached");
    clock.set_unix(1_621_857_601);
    let res = guard.accept(&genuine, Bytes::from_static(BODY)).await;
    assert_eq!(res.status(), 503, "expired: fetched again, and refused");
    assert_eq!(fake.calls(), 2);
}

/// A certificate in PayPal's name that does not chain to a trusted root (what anyone
/// who can shape the bytes at a PayPal URL can serve) is refused, and never cached.
#[tokio::test]
async fn a_self_signed_certificate_in_paypals_name_is_refused() {
    let clock = ManualClock::at_unix(SENT);
    let forged = Fake::serving(LIVE_URL, &[SELF_SIGNED]);
    let guard = guard(test_pki_source(&forged, &clock), &clock);
    assert_eq!(status(&guard, &clock, LIVE_URL, "forged-1").await, 503);
    // Not cached as trusted: fetched again (a minute later), refused again.
    clock.advance(Duration::from_secs(61));
    assert_eq!(status(&guard, &clock, LIVE_URL, "forged-2").await, 503);
    assert_eq!(forged.calls(), 2);

    // The same key in a certificate issued by the trusted CA is accepted.
    let genuine = Fake::serving(LIVE_URL, &[LIVE, INTERMEDIATE]);
    let guard = self::guard(test_pki_source(&genuine, &clock), &clock);
    assert_eq!(status(&guard, &clock, LIVE_URL, "genuine").await, 202);

    // With the chain checked against Mozilla's roots: the test CA is not one.
    let mozilla = PayPalCertificates::with_fetcher(WEBHOOK_ID, Shared(Arc::clone(&genuine)))
        .unwrap()
        .check_chain()
        .clock(clock.clone());
    let guard = self::guard(mozilla, &clock);
    assert_eq!(status(&guard, &clock, LIVE_URL, "no-anchor").await, 503);

    // A certificate pinned is trusted alone: another one is refused.
    let pinned = vector_source(&genuine, &clock);
    let guard = self::guard(pinned, &clock);
    assert_eq!(status(&guard, &clock, LIVE_URL, "not-pinned").await, 503);
}

/// The chain is built from the PEM's other certificates and those configured; a
/// certificate served alone, its intermediate nowhere, is refused.
#[tokio::test]
async fn the_chain_goes_through_the_pems_or_the_configured_intermediates() {
    let clock = ManualClock::at_unix(SENT);
    let alone = Fake::serving(LIVE_URL, &[LIVE]);
    let guard = guard(test_pki_source(&alone, &clock), &clock);
    assert_eq!(status(&guard, &clock, LIVE_URL, "alone").await, 503);

    let source = test_pki_source(&alone, &clock).intermediates(INTERMEDIATE).unwrap();
    let guard = self::guard(source, &clock);
    assert_eq!(status(&guard, &clock, LIVE_URL, "configured").await, 202);

    // The root served with the chain does not make itself trusted.
    let with_root = Fake::serving(LIVE_URL, &[LIVE, INTERMEDIATE, ROOT]);
    let mozilla = PayPalCertificates::with_fetcher(WEBHOOK_ID, Shared(with_root))
        .unwrap()
        .check_chain()
        .clock(clock.clone());
    let guard = self::guard(mozilla, &clock);
    assert_eq!(status(&guard, &clock, LIVE_URL, "self-vouched").await, 503);
}

/// With a fetcher other than the built-in one, the chain is checked by default: a
/// self-signed certificate in PayPal's name is refused. `without_chain_check` trusts the
/// fetcher as the built-in one is (see the module docs): a certificate fetched from
/// PayPal's certificate URL is trusted when its name and dates are right, whoever issued
/// it; `check_chain` turns the check on again.
#[tokio::test]
async fn by_default_the_url_name_and_dates_vouch_for_a_certificate() {
    let clock = ManualClock::at_unix(SENT);
    let served = Fake::serving(LIVE_URL, &[SELF_SIGNED]);
    let source = || {
        PayPalCertificates::with_fetcher(WEBHOOK_ID, Shared(Arc::clone(&served)))
            .unwrap()
            .clock(clock.clone())
    };
    let guard = self::guard(source(), &clock);
    assert_eq!(status(&guard, &clock, LIVE_URL, "by-default").await, 503);
    let guard = self::guard(source().without_chain_check(), &clock);
    assert_eq!(status(&guard, &clock, LIVE_URL, "unchecked").await, 202);
    let guard = self::guard(source().without_chain_check().check_chain(), &clock);
    assert_eq!(status(&guard, &clock, LIVE_URL, "chain-checked").await, 503);
}

/// Only certificates issued to PayPal's message-signing names, exactly, are trusted,
/// however well they chain.
#[tokio::test]
async fn only_paypals_signing_names_are_trusted() {
    let cases = [
        ("another PayPal name", EVIL, 503),
        ("a wildcard", WILDCARD, 503),
        ("the sandbox name as CN, no SAN", CN_ONLY, 202),
        ("the live name as CN and SAN", LIVE, 202),
    ];
    for (name, cert, want) in cases {
        let clock = ManualClock::at_unix(SENT);
        let fake = Fake::serving(LIVE_URL, &[cert, INTERMEDIATE]);
        let guard = guard(test_pki_source(&fake, &clock), &clock);
        assert_eq!(status(&guard, &clock, LIVE_URL, "x").await, want, "case {name}");
    }
}

/// A certificate is refused outside its validity period, by the source's clock when
/// fetched and by the guard's for each delivery.
#[tokio::test]
async fn a_certificate_outside_its_validity_period_is_refused() {
    for (name, at, want) in [
        ("a second before notBefore", LIVE_NOT_BEFORE - 1, 503),
        ("at notBefore", LIVE_NOT_BEFORE, 202),
        ("at notAfter", LIVE_NOT_AFTER, 202),
        ("a second after notAfter", LIVE_NOT_AFTER + 1, 503),
    ] {
        let clock = ManualClock::at_unix(at);
        let fake = Fake::serving(LIVE_URL, &[LIVE, INTERMEDIATE]);
        let guard = guard(test_pki_source(&fake, &clock), &clock);
        assert_eq!(status(&guard, &clock, LIVE_URL, "x").await, want, "case {name}");
    }

    // Fetched while valid by the source's clock, but the guard's says it has expired.
    // (A minute apart: a delivery sent by the guard's clock is within the source's
    // tolerance, 5 minutes into the future, or it would be refused before any fetch.)
    let source_clock = ManualClock::at_unix(LIVE_NOT_AFTER - 60);
    let guard_clock = ManualClock::at_unix(LIVE_NOT_AFTER + 1);
    let fake = Fake::serving(LIVE_URL, &[LIVE, INTERMEDIATE]);
    let guard = guard(test_pki_source(&fake, &source_clock), &guard_clock);
    let res = status(&guard, &guard_clock, LIVE_URL, "late").await;
    assert_eq!(res, 401);
    assert_eq!(fake.calls(), 1);
}

/// A certificate is never cached past its `notAfter`, whatever the time to live.
#[tokio::test]
async fn never_cached_past_not_after() {
    let clock = ManualClock::at_unix(LIVE_NOT_AFTER - 3600);
    let fake = Fake::serving(LIVE_URL, &[LIVE, INTERMEDIATE]);
    let guard = guard(test_pki_source(&fake, &clock), &clock); // time to live: 24 h
    assert_eq!(status(&guard, &clock, LIVE_URL, "a").await, 202);
    clock.set_unix(LIVE_NOT_AFTER - 1);
    assert_eq!(status(&guard, &clock, LIVE_URL, "b").await, 202);
    assert_eq!(fake.calls(), 1, "cached until notAfter");
    clock.set_unix(LIVE_NOT_AFTER + 1);
    assert_eq!(status(&guard, &clock, LIVE_URL, "c").await, 503, "expired, not served from the cache");
    assert_eq!(fake.calls(), 2, "fetched again");
    // Renewed at the same URL: fetched again (a minute after the failure) and used.
    fake.serve(LIVE_URL, &[RENEWED, INTERMEDIATE]);
    clock.advance(Duration::from_secs(61));
    assert_eq!(status(&guard, &clock, LIVE_URL, "d").await, 202);
    assert_eq!(fake.calls(), 3);
}

/// However many URLs a flood names, URLs whose certificate has not verified a delivery
/// are fetched only with a token: a burst, then one per `NEW_URL_EVERY`.
#[tokio::test]
async fn a_flood_of_new_urls_costs_at_most_the_bucket() {
    let clock = ManualClock::at_unix(SENT);
    let fake = Fake::new(); // every URL fails: a flood of random certificate names
    let guard = guard(test_pki_source(&fake, &clock), &clock);
    let flood = |n: usize| format!("https://api.paypal.com/v1/notifications/certs/CERT-flood-{n}");
    for n in 0..100 {
        assert_eq!(status(&guard, &clock, &flood(n), "x").await, 503, "{n}");
    }
    assert_eq!(fake.calls(), NEW_URL_BURST as usize, "one fetch a token");
    clock.advance(NEW_URL_EVERY);
    for n in 100..200 {
        assert_eq!(status(&guard, &clock, &flood(n), "x").await, 503, "{n}");
    }
    assert_eq!(fake.calls(), NEW_URL_BURST as usize + 1, "one token more");

    // The genuine certificate's first fetch waits for a token too (it cannot be told
    // apart before it is fetched)...
    fake.serve(LIVE_URL, &[LIVE, INTERMEDIATE]);
    assert_eq!(status(&guard, &clock, LIVE_URL, "early").await, 503);
    // ...and gets the next one.
    clock.advance(NEW_URL_EVERY);
    assert_eq!(status(&guard, &clock, LIVE_URL, "genuine").await, 202);
}

/// Once a certificate verified a delivery, its re-fetch needs no token and has a permit
/// of its own: an empty bucket, and fetches that hang (a flood naming URLs that answer
/// slowly) holding both permits for new URLs, do not make its deliveries wait or fail.
#[tokio::test(start_paused = true)]
async fn a_flood_does_not_starve_the_refetch_of_a_verified_certificate() {
    let clock = ManualClock::at_unix(LIVE_NOT_AFTER - 600);
    let fake = Fake::serving(LIVE_URL, &[LIVE, INTERMEDIATE]);
    let source = test_pki_source(&fake, &clock).ttl(Duration::from_secs(300));
    let guard = Arc::new(guard(source, &clock));
    assert_eq!(status(&guard, &clock, LIVE_URL, "first").await, 202);

    // `LIVE` expires; the URL now serves `RENEWED`.
    clock.set_unix(LIVE_NOT_AFTER + 1);
    fake.serve(LIVE_URL, &[RENEWED, INTERMEDIATE]);
    // The flood: URLs that fail at once take tokens, then URLs that hang take the last
    // ones and both permits.
    let url = |n: u32| format!("https://api.paypal.com/v1/notifications/certs/CERT-flood-{n}");
    for n in 0..NEW_URL_BURST - 2 {
        assert_eq!(status(&guard, &clock, &url(n), "x").await, 503);
    }
    let mut hanging = Vec::new();
    for n in NEW_URL_BURST - 2..NEW_URL_BURST {
        fake.hang.lock().unwrap().insert(url(n));
        let (guard, clock, url) = (Arc::clone(&guard), clock.clone(), url(n));
        hanging.push(tokio::spawn(async move { status(&guard, &clock, &url, "x").await }));
    }
    while fake.calls() < 1 + NEW_URL_BURST as usize {
        tokio::task::yield_now().await;
    }

    let genuine =
        tokio::time::timeout(Duration::from_secs(1), status(&guard, &clock, LIVE_URL, "renewed")).await;
    assert_eq!(genuine.expect("not behind the flood"), 202);
    assert_eq!(fake.calls(), 2 + NEW_URL_BURST as usize);
    fake.release();
    for task in hanging {
        assert_eq!(task.await.unwrap(), 503);
    }
}

/// A certificate that verified a delivery keeps verifying, within its validity period,
/// while its re-fetch fails: PayPal's deliveries do not fail when its certificate host
/// does, or when a flood is on. Past `notAfter` it is gone.
#[tokio::test]
async fn a_verified_certificate_is_kept_while_its_refetch_fails() {
    let clock = ManualClock::at_unix(SENT);
    let fake = Fake::serving(LIVE_URL, &[LIVE, INTERMEDIATE]);
    let source = test_pki_source(&fake, &clock).ttl(Duration::from_secs(3600));
    let guard = guard(source, &clock);
    assert_eq!(status(&guard, &clock, LIVE_URL, "a").await, 202);

    fake.unserve(LIVE_URL);
    clock.advance(Duration::from_secs(3601));
    // A flood empties the bucket: a re-fetch of a verified certificate needs no token.
    let flood = |n: usize| format!("https://api.paypal.com/v1/notifications/certs/CERT-flood-{n}");
    for n in 0..10 {
        assert_eq!(status(&guard, &clock, &flood(n), "x").await, 503);
    }
    let calls = fake.calls();
    assert_eq!(status(&guard, &clock, LIVE_URL, "b").await, 202, "the re-fetch failed: kept");
    assert_eq!(fake.calls(), calls + 1, "re-fetched");
    assert_eq!(status(&guard, &clock, LIVE_URL, "c").await, 202);
    assert_eq!(fake.calls(), calls + 1, "not again within a minute");
    clock.advance(Duration::from_secs(61));
    assert_eq!(status(&guard, &clock, LIVE_URL, "d").await, 202);
    assert_eq!(fake.calls(), calls + 2, "tried again a minute later");

    // Back: the re-fetched certificate is cached again.
    fake.serve(LIVE_URL, &[LIVE, INTERMEDIATE]);
    clock.advance(Duration::from_secs(61));
    assert_eq!(status(&guard, &clock, LIVE_URL, "e").await, 202);
    assert_eq!(status(&guard, &clock, LIVE_URL, "f").await, 202);
    assert_eq!(fake.calls(), calls + 3);

    // Past `notAfter`, the certificate is not used, whatever its re-fetch does.
    fake.unserve(LIVE_URL);
    clock.set_unix(LIVE_NOT_AFTER + 1);
    assert_eq!(status(&guard, &clock, LIVE_URL, "g").await, 503);
}

/// While one request re-fetches a verified certificate whose time to live ran out, the
/// others go on with it instead of waiting.
#[tokio::test(start_paused = true)]
async fn a_verified_certificate_is_kept_while_its_refetch_is_pending() {
    let clock = ManualClock::at_unix(SENT);
    let fake = Fake::serving(LIVE_URL, &[LIVE, INTERMEDIATE]);
    let source = test_pki_source(&fake, &clock).ttl(Duration::from_secs(3600));
    let guard = Arc::new(guard(source, &clock));
    assert_eq!(status(&guard, &clock, LIVE_URL, "a").await, 202);

    clock.advance(Duration::from_secs(3601));
    fake.hang.lock().unwrap().insert(LIVE_URL.to_owned());
    let refetching = {
        let (guard, clock) = (Arc::clone(&guard), clock.clone());
        tokio::spawn(async move { status(&guard, &clock, LIVE_URL, "b").await })
    };
    while fake.calls() < 2 {
        tokio::task::yield_now().await;
    }
    for id in ["c", "d", "e"] {
        let res = tokio::time::timeout(Duration::from_secs(1), status(&guard, &clock, LIVE_URL, id)).await;
        assert_eq!(res.expect("not waiting for the re-fetch"), 202, "{id}");
    }
    assert_eq!(fake.calls(), 2, "one re-fetch");
    fake.release();
    assert_eq!(refetching.await.unwrap(), 202);
}

/// A fetch that never ends (a fetcher of yours that bounds nothing) is given up after
/// 10 s: the re-fetch's permit is free again, the certificate at hand goes on verifying,
/// and the re-fetch is tried again later instead of never.
#[tokio::test(start_paused = true)]
async fn a_fetch_that_never_ends_is_given_up() {
    let clock = ManualClock::at_unix(SENT);
    let fake = Fake::serving(LIVE_URL, &[LIVE, INTERMEDIATE]);
    let source = test_pki_source(&fake, &clock).ttl(Duration::from_secs(3600));
    let guard = guard(source, &clock);
    assert_eq!(status(&guard, &clock, LIVE_URL, "a").await, 202);
    clock.advance(Duration::from_secs(3601));
    fake.hang.lock().unwrap().insert(LIVE_URL.to_owned());
    // Paused, Tokio's clock jumps to the next timer: the fetch's limit, else this one.
    let res = tokio::time::timeout(Duration::from_secs(3600), status(&guard, &clock, LIVE_URL, "b")).await;
    assert_eq!(res.expect("the hanging fetch was given up"), 202, "verified with the certificate at hand");
    assert_eq!(fake.calls(), 2);
    fake.hang.lock().unwrap().clear();
    clock.advance(Duration::from_secs(61));
    assert_eq!(status(&guard, &clock, LIVE_URL, "c").await, 202);
    assert_eq!(fake.calls(), 3, "re-fetched once the failure's minute was over");
}
