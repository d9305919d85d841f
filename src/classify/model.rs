//! The model and its file format.
//!
//! ```text
//! offset  size        field
//! 0       8           magic "CBMODEL\n"
//! 8       4           MODEL_VERSION (u32 LE)
//! 12      4           TOKENIZER_VERSION the model was trained with (u32 LE)
//! 16      4           bits: 2^bits weights (MIN_BITS..=MAX_BITS)
//! 20      4           scale (f32 LE): weight = q · scale
//! 24      4           bias (f32 LE)
//! 28      4           training messages (u32 LE; informational)
//! 32      2·2^bits    q (i16 LE), one per hashed feature bucket
//! end-8   8           FNV-1a 64 of every byte before it (u64 LE)
//! ```
//!
//! Loading checks the magic, both versions, the size implied by `bits`, finite numbers and
//! the checksum, and refuses anything else with a [`ModelError`] that says which.

use std::fmt;

/// Version of the file layout.
pub const MODEL_VERSION: u32 = 1;
/// Version of the tokens and their hashing ([`crate::classify::Tokenizer`]); a model trained
/// with another is refused.
pub const TOKENIZER_VERSION: u32 = 13;
const MAGIC: &[u8; 8] = b"CBMODEL\n";
const HEADER_BYTES: usize = 32;
/// Fewest hash bits a model may have.
pub const MIN_BITS: u32 = 8;
/// Most hash bits a model may have (2^24 weights: 32 MiB).
pub const MAX_BITS: u32 = 24;

/// A trained classifier: a bias and `2^bits` quantised weights over hashed features.
#[derive(Clone, PartialEq)]
pub struct Model {
    bits: u32,
    scale: f32,
    bias: f32,
    trained_on: u32,
    weights: Vec<i16>,
}

impl fmt::Debug for Model {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Model")
            .field("bits", &self.bits)
            .field("scale", &self.scale)
            .field("bias", &self.bias)
            .field("trained_on", &self.trained_on)
            .finish_non_exhaustive()
    }
}

/// Why a model file was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelError {
    problem: String,
}

impl fmt::Display for ModelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "not a usable conbool model: {}", self.problem)
    }
}

impl std::error::Error for ModelError {}

fn refuse(problem: impl Into<String>) -> ModelError {
    ModelError {
        problem: problem.into(),
    }
}

impl Model {
    /// A model from real-valued weights (`weights.len()` must be a power of two within
    /// `MIN_BITS..=MAX_BITS`), quantised to 16 bits.
    pub fn from_weights(weights: &[f32], bias: f32, trained_on: u32) -> Result<Model, ModelError> {
        let bits = weights.len().trailing_zeros();
        if !weights.len().is_power_of_two() || !(MIN_BITS..=MAX_BITS).contains(&bits) {
            return Err(refuse(format!("{} weights", weights.len())));
        }
        if !bias.is_finite() || weights.iter().any(|w| !w.is_finite()) {
            return Err(refuse("weights are not finite"));
        }
        let max = weights.iter().fold(0f32, |m, w| m.max(w.abs()));
        let scale = if max > 0.0 { max / 32767.0 } else { 1.0 };
        let q = weights
            .iter()
            .map(|w| (w / scale).round().clamp(-32767.0, 32767.0) as i16)
            .collect();
        Ok(Model {
            bits,
            scale,
            bias,
            trained_on,
            weights: q,
        })
    }

    /// Reads a model file's bytes, checking everything (see the module docs).
    pub fn from_bytes(bytes: &[u8]) -> Result<Model, ModelError> {
        let word = |at: usize| -> Result<[u8; 4], ModelError> {
            bytes
                .get(at..at + 4)
                .and_then(|s| s.try_into().ok())
                .ok_or_else(|| refuse("file too short"))
        };
        if bytes.get(..8) != Some(MAGIC.as_slice()) {
            return Err(refuse("wrong magic (not a model file)"));
        }
        let version = u32::from_le_bytes(word(8)?);
        if version != MODEL_VERSION {
            return Err(refuse(format!(
                "file format version {version}, this build reads {MODEL_VERSION}"
            )));
        }
        let tokenizer = u32::from_le_bytes(word(12)?);
        if tokenizer != TOKENIZER_VERSION {
            return Err(refuse(format!(
                "trained with tokenizer version {tokenizer}, this build has {TOKENIZER_VERSION}: train it again"
            )));
        }
        let bits = u32::from_le_bytes(word(16)?);
        if !(MIN_BITS..=MAX_BITS).contains(&bits) {
            return Err(refuse(format!(
                "{bits} hash bits (expected {MIN_BITS} to {MAX_BITS})"
            )));
        }
        let n = 1usize << bits;
        let want = HEADER_BYTES + 2 * n + 8;
        if bytes.len() != want {
            return Err(refuse(format!(
                "{} bytes, expected {want} for {bits} hash bits (truncated or padded)",
                bytes.len()
            )));
        }
        let body = &bytes[..want - 8];
        let sum = u64::from_le_bytes(
            bytes[want - 8..]
                .try_into()
                .map_err(|_| refuse("file too short"))?,
        );
        if fnv1a(body) != sum {
            return Err(refuse("checksum mismatch (corrupt file)"));
        }
        let scale = f32::from_le_bytes(word(20)?);
        let bias = f32::from_le_bytes(word(24)?);
        if !scale.is_finite() || scale <= 0.0 || !bias.is_finite() {
            return Err(refuse("scale or bias not a finite number"));
        }
        let trained_on = u32::from_le_bytes(word(28)?);
        let weights = body[HEADER_BYTES..]
            .chunks_exact(2)
            .map(|c| i16::from_le_bytes([c[0], c[1]]))
            .collect();
        Ok(Model {
            bits,
            scale,
            bias,
            trained_on,
            weights,
        })
    }

    /// The file's bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_BYTES + 2 * self.weights.len() + 8);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&MODEL_VERSION.to_le_bytes());
        out.extend_from_slice(&TOKENIZER_VERSION.to_le_bytes());
        out.extend_from_slice(&self.bits.to_le_bytes());
        out.extend_from_slice(&self.scale.to_le_bytes());
        out.extend_from_slice(&self.bias.to_le_bytes());
        out.extend_from_slice(&self.trained_on.to_le_bytes());
        for w in &self.weights {
            out.extend_from_slice(&w.to_le_bytes());
        }
        let sum = fnv1a(&out);
        out.extend_from_slice(&sum.to_le_bytes());
        out
    }

    /// Hash bits (the model has `2^bits` weights).
    pub fn bits(&self) -> u32 {
        self.bits
    }

    /// How many messages it was trained on.
    pub fn trained_on(&self) -> u32 {
        self.trained_on
    }

    /// The quantised weight of a feature hash.
    #[inline]
    pub fn weight(&self, feature: u32) -> i16 {
        let i = (feature >> (32 - self.bits)) as usize;
        self.weights.get(i).copied().unwrap_or(0)
    }

    /// The bucket of a feature hash (for training).
    #[inline]
    pub(crate) fn bucket(bits: u32, feature: u32) -> usize {
        (feature >> (32 - bits)) as usize
    }

    /// Probability of spam for a message whose `n` distinct features' quantised weights sum
    /// to `sum`: `σ(bias + scale · sum / √n)`.
    pub fn probability_of_sum(&self, sum: i64, n: usize) -> f64 {
        let z =
            f64::from(self.bias) + f64::from(self.scale) * sum as f64 / (n.max(1) as f64).sqrt();
        1.0 / (1.0 + (-z).exp())
    }

    /// What feature `feature` adds to the log-odds of a message with `n` distinct features:
    /// `scale · weight / √n` (the probability is `σ(bias + the sum of these)`).
    pub fn contribution(&self, feature: u32, n: usize) -> f64 {
        f64::from(self.scale) * f64::from(self.weight(feature)) / (n.max(1) as f64).sqrt()
    }

    /// The log-odds of a message without features.
    pub fn bias(&self) -> f64 {
        f64::from(self.bias)
    }

    /// Probability of spam for a set of distinct features.
    pub fn probability(&self, features: &[u32]) -> f64 {
        self.probability_of_sum(self.sum(features), features.len())
    }

    /// The sum of the quantised weights of `features` (four at a time: the loads overlap).
    pub fn sum(&self, features: &[u32]) -> i64 {
        let shift = 32 - self.bits;
        let w = |f: u32| {
            i64::from(
                self.weights
                    .get((f >> shift) as usize)
                    .copied()
                    .unwrap_or(0),
            )
        };
        let mut fours = features.chunks_exact(4);
        let mut sum = 0i64;
        for c in &mut fours {
            sum += (w(c[0]) + w(c[1])) + (w(c[2]) + w(c[3]));
        }
        sum + fours.remainder().iter().map(|&f| w(f)).sum::<i64>()
    }
}

/// FNV-1a, 64 bits.
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Model {
        let w: Vec<f32> = (0..256).map(|i| (i as f32 - 128.0) / 64.0).collect();
        Model::from_weights(&w, -0.25, 42).expect("model")
    }

    #[test]
    fn round_trip() {
        let m = sample();
        let bytes = m.to_bytes();
        assert_eq!(bytes.len(), 32 + 512 + 8);
        let back = Model::from_bytes(&bytes).expect("loads");
        assert_eq!(back, m);
        assert_eq!(back.trained_on(), 42);
        let f = [0x0100_0000u32, 0xff00_0000, 0x8000_0000];
        assert_eq!(back.probability(&f), m.probability(&f));
    }

    #[test]
    fn corrupt_and_incompatible_files_are_refused() {
        let good = sample().to_bytes();
        let n = good.len();
        let flip = |at: usize| {
            let mut b = good.clone();
            b[at] ^= 0x40;
            b
        };
        let with = |at: usize, v: u32| {
            let mut b = good.clone();
            b[at..at + 4].copy_from_slice(&v.to_le_bytes());
            b
        };
        let rows: Vec<(&str, Vec<u8>, &str)> = vec![
            ("empty", Vec::new(), "magic"),
            ("magic", flip(0), "magic"),
            ("version", with(8, 2), "format version 2"),
            ("tokenizer", with(12, 99), "tokenizer version 99"),
            ("bits_low", with(16, 3), "hash bits"),
            ("bits_high", with(16, 40), "hash bits"),
            ("bits_mismatch", with(16, 9), "expected"),
            ("truncated", good[..n - 1].to_vec(), "truncated"),
            ("padded", [good.clone(), vec![0]].concat(), "padded"),
            ("weight_flipped", flip(100), "checksum"),
            ("checksum_flipped", flip(n - 1), "checksum"),
        ];
        for (row, bytes, want) in rows {
            let err = Model::from_bytes(&bytes).expect_err(row).to_string();
            assert!(err.contains(want), "{row}: {err}");
        }
    }

    #[test]
    fn non_finite_scale_is_refused_even_with_a_good_checksum() {
        let mut b = sample().to_bytes();
        b[20..24].copy_from_slice(&f32::NAN.to_le_bytes());
        let n = b.len();
        let sum = fnv1a(&b[..n - 8]);
        b[n - 8..].copy_from_slice(&sum.to_le_bytes());
        let err = Model::from_bytes(&b).expect_err("nan").to_string();
        assert!(err.contains("finite"), "{err}");
    }
}
