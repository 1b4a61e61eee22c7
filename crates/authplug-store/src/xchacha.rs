//! XChaCha20-Poly1305 (draft-irtf-cfrg-xchacha, the construction of RustCrypto's
//! `XChaCha20Poly1305`, with which it is checked to agree byte for byte): HChaCha20 of the key
//! and the nonce's first 16 bytes gives a subkey, which seals with ChaCha20-Poly1305 (RFC 8439)
//! under four zero bytes and the nonce's last 8. The subkey comes from `chacha20`'s `hchacha`;
//! the AEAD is `ring`'s, whose Poly1305 costs a tenth of the portable crate's AVX2 one on the
//! short values a store holds (a decryption was a third of an uncached `authorize`).

use chacha20::cipher::consts::U10;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305};
use zeroize::Zeroizing;

/// Bytes of a key, a nonce and a tag.
pub(crate) const KEY_LEN: usize = 32;
pub(crate) const NONCE_LEN: usize = 24;

/// Failure, without a reason (a wrong key and a changed byte are the same to a caller).
#[derive(Debug)]
pub(crate) struct Failed;

/// The ChaCha20-Poly1305 key and nonce for `key` and the extended `nonce`.
fn derive(key: &[u8; KEY_LEN], nonce: &[u8; NONCE_LEN]) -> (LessSafeKey, Nonce) {
    let first: &[u8; 16] = nonce[..16].try_into().expect("16 bytes");
    let mut subkey = Zeroizing::new([0u8; KEY_LEN]);
    let mut derived = chacha20::hchacha::<U10>(key.into(), first.into());
    subkey.copy_from_slice(&derived);
    zeroize::Zeroize::zeroize(derived.as_mut_slice());
    let unbound = UnboundKey::new(&CHACHA20_POLY1305, subkey.as_slice()).expect("a 32-byte key");
    let mut short = [0u8; 12];
    short[4..].copy_from_slice(&nonce[16..]);
    (LessSafeKey::new(unbound), Nonce::assume_unique_for_key(short))
}

/// `plaintext` sealed: the ciphertext with its 16-byte tag after it.
pub(crate) fn seal(
    key: &[u8; KEY_LEN],
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    plaintext: &[u8],
) -> Result<Vec<u8>, Failed> {
    let (key, nonce) = derive(key, nonce);
    let mut sealed = plaintext.to_vec();
    key.seal_in_place_append_tag(nonce, Aad::from(aad), &mut sealed).map_err(|_| Failed)?;
    Ok(sealed)
}

/// The plaintext of `sealed` (ciphertext and tag), if it authenticates under `key`, `nonce` and
/// `aad`.
pub(crate) fn open(
    key: &[u8; KEY_LEN],
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    sealed: &[u8],
) -> Result<Zeroizing<Vec<u8>>, Failed> {
    let (key, nonce) = derive(key, nonce);
    let mut buffer = Zeroizing::new(sealed.to_vec());
    let length = key.open_in_place(nonce, Aad::from(aad), &mut buffer).map_err(|_| Failed)?.len();
    buffer.truncate(length);
    Ok(buffer)
}

#[cfg(test)]
mod tests {
    use chacha20poly1305::aead::{Aead, KeyInit, Payload};
    use chacha20poly1305::{XChaCha20Poly1305, XNonce};

    use super::*;

    fn random<const N: usize>() -> [u8; N] {
        let mut bytes = [0u8; N];
        getrandom::getrandom(&mut bytes).unwrap();
        bytes
    }

    /// Values sealed by either open with the other, for lengths around the block sizes: stores
    /// written before this module stay readable, and what it writes reads back anywhere.
    #[test]
    fn agrees_with_the_reference_implementation_both_ways() {
        for length in [0, 1, 15, 16, 17, 63, 64, 65, 200, 1000] {
            let (key, nonce) = (random::<KEY_LEN>(), random::<NONCE_LEN>());
            let plaintext: Vec<u8> = (0..length).map(|i| (i * 7 + length) as u8).collect();
            let aad = format!("authplug secret v1\0system-{length}\0injected\0token\0k1");
            let reference = XChaCha20Poly1305::new((&key).into());
            let payload = Payload { msg: &plaintext, aad: aad.as_bytes() };
            let theirs = reference.encrypt(XNonce::from_slice(&nonce), payload).unwrap();
            let ours = seal(&key, &nonce, aad.as_bytes(), &plaintext).unwrap();
            assert_eq!(ours, theirs, "length {length}");
            assert_eq!(*open(&key, &nonce, aad.as_bytes(), &theirs).unwrap(), plaintext);
            let payload = Payload { msg: &ours, aad: aad.as_bytes() };
            assert_eq!(reference.decrypt(XNonce::from_slice(&nonce), payload).unwrap(), plaintext);
        }
    }

    #[test]
    fn a_changed_byte_key_nonce_or_place_does_not_open() {
        let (key, nonce) = (random::<KEY_LEN>(), random::<NONCE_LEN>());
        let sealed = seal(&key, &nonce, b"place", b"a refresh token").unwrap();
        for i in 0..sealed.len() {
            let mut changed = sealed.clone();
            changed[i] ^= 0x40;
            assert!(open(&key, &nonce, b"place", &changed).is_err(), "byte {i}");
        }
        let mut other_nonce = nonce;
        other_nonce[20] ^= 1;
        assert!(open(&key, &other_nonce, b"place", &sealed).is_err());
        assert!(open(&random(), &nonce, b"place", &sealed).is_err());
        assert!(open(&key, &nonce, b"other place", &sealed).is_err());
        assert!(open(&key, &nonce, b"place", &sealed[..sealed.len() - 1]).is_err());
    }
}
