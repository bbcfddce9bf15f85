//! Deserializers for the wire's integers: JSON Schema's `integer` is any number with no fraction,
//! so `5.0` is as valid a `num_qubits` as `5` (serde's own `i32` refuses it, which turned a
//! schema-valid request into a 400).

use serde::{Deserialize, Deserializer};

fn whole<E: serde::de::Error, T: TryFrom<i64>>(n: serde_json::Number) -> Result<T, E> {
    let v = n.as_i64().or_else(|| {
        n.as_f64()
            // 2^63 as f64 is just past i64::MAX: the range is half open.
            .filter(|f| f.fract() == 0.0 && *f >= i64::MIN as f64 && *f < i64::MAX as f64)
            .map(|f| f as i64)
    });
    v.and_then(|v| T::try_from(v).ok())
        .ok_or_else(|| E::custom(format!("invalid value: {n}, expected an integer in range")))
}

/// A whole number, written with or without a fraction of zero.
pub fn integer<'de, D: Deserializer<'de>, T: TryFrom<i64>>(d: D) -> Result<T, D::Error> {
    whole(serde_json::Number::deserialize(d)?)
}

/// [`integer`] or null.
pub fn opt_integer<'de, D: Deserializer<'de>, T: TryFrom<i64>>(d: D) -> Result<Option<T>, D::Error> {
    Option::<serde_json::Number>::deserialize(d)?.map(whole).transpose()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[derive(Debug, Deserialize)]
    struct T {
        #[serde(deserialize_with = "integer")]
        n: i32,
        #[serde(default, deserialize_with = "opt_integer")]
        m: Option<i64>,
    }

    fn parse(v: serde_json::Value) -> Result<T, serde_json::Error> {
        serde_json::from_value(v)
    }

    #[test]
    fn whole_numbers_with_or_without_a_zero_fraction() {
        let t = parse(json!({"n": 567.0, "m": 1000.0})).unwrap();
        assert_eq!((t.n, t.m), (567, Some(1000)));
        let t = parse(json!({"n": -3, "m": null})).unwrap();
        assert_eq!((t.n, t.m), (-3, None));
        assert_eq!(parse(json!({"n": 1})).unwrap().m, None);
        assert_eq!(parse(json!({"n": 0, "m": i64::MAX})).unwrap().m, Some(i64::MAX));
    }

    #[test]
    fn fractions_out_of_range_and_other_types_are_refused() {
        for bad in [
            json!({"n": 1.5}),
            json!({"n": 3e9}),
            json!({"n": "1"}),
            json!({"n": 0, "m": 1e30}),
            json!({"n": 0, "m": 0.25}),
            json!({"n": 0, "m": u64::MAX}),
        ] {
            assert!(parse(bad.clone()).is_err(), "{bad}");
        }
    }
}
