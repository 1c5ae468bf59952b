//! A compact binary encoding of stored [`Profile`]s.
//!
//! Profiles are decoded and re-encoded every time an event touches them, so serde_json of the
//! whole profile (field names, escaping, float formatting) was a large share of the pipeline's
//! time. This encoding writes the fields in declaration order without names.
//!
//! Layout: a leading [`PROFILE_TAG`] byte (a JSON row starts with `{`, so rows written before
//! this encoding still decode, see [`decode_profile`]); integers are LEB128 varints (signed ones
//! zigzag-encoded), `f64` are their 8 IEEE bytes (little endian), strings are a length and UTF-8
//! bytes, options a 0/1 byte then the value, maps and lists a count then their entries in
//! order. JSON values (trait values, computed traits) are a type byte then the value, objects
//! in their own key order.
//!
//! The encoding is canonical: `encode(decode(bytes)) == bytes` for every output of the encoder,
//! and `decode(encode(profile)) == profile`, so replay reproduces the stored bytes exactly.

use std::collections::BTreeMap;

use atrium_profiles::{Commerce, Device, Order, OrderStatus, Profile, Touch, TraitValue, Usage};
use atrium_types::codec::{CodecError, Reader, Writer};

/// First byte of a binary profile row (version 1 of this layout).
pub const PROFILE_TAG: u8 = 1;

/// Decodes a stored profile row: the binary layout, or JSON for rows written before it.
pub fn decode_profile(bytes: &[u8]) -> Result<Profile, ProfileDecodeError> {
    match bytes.first() {
        Some(&PROFILE_TAG) => {
            let mut reader = Reader::new(bytes);
            reader.u8()?;
            let profile = reader.profile()?;
            if !reader.is_empty() {
                return Err(reader.error("trailing bytes").into());
            }
            Ok(profile)
        }
        _ => Ok(serde_json::from_slice(bytes)?),
    }
}

/// Why a stored profile row did not decode.
#[derive(Debug, thiserror::Error)]
pub enum ProfileDecodeError {
    #[error(transparent)]
    Binary(#[from] CodecError),
    #[error(transparent)]
    Json(#[from] serde_json::Error),
}

/// Encodes a profile in the binary layout.
pub fn encode_profile(profile: &Profile) -> Vec<u8> {
    let mut writer = Writer::new(Vec::with_capacity(512));
    writer.u8(PROFILE_TAG);
    writer.profile(profile);
    writer.bytes
}

/// The profile layout's compound parts, written with the shared primitives.
trait WriteParts {
    fn option_str(&mut self, value: Option<&str>);
    fn usage(&mut self, usage: &Usage);
    fn usages(&mut self, usages: &BTreeMap<String, Usage>);
    fn touch(&mut self, touch: Option<&Touch>);
    fn order(&mut self, order: &Order);
    fn commerce(&mut self, commerce: &Commerce);
    fn profile(&mut self, profile: &Profile);
}

impl WriteParts for Writer {
    fn option_str(&mut self, value: Option<&str>) {
        match value {
            Some(value) => {
                self.u8(1);
                self.str(value);
            }
            None => self.u8(0),
        }
    }

    fn usage(&mut self, usage: &Usage) {
        let Usage {
            first_seen_ms,
            last_seen_ms,
            events,
        } = usage;
        self.i64(*first_seen_ms);
        self.i64(*last_seen_ms);
        self.u64(*events);
    }

    fn usages(&mut self, usages: &BTreeMap<String, Usage>) {
        self.u64(usages.len() as u64);
        for (key, usage) in usages {
            self.str(key);
            self.usage(usage);
        }
    }

    fn touch(&mut self, touch: Option<&Touch>) {
        let Some(touch) = touch else {
            self.u8(0);
            return;
        };
        self.u8(1);
        let Touch {
            at_ms,
            offset,
            source,
            medium,
            name,
            term,
            content,
            channel,
        } = touch;
        self.i64(*at_ms);
        self.u64(*offset);
        self.option_str(source.as_deref());
        self.option_str(medium.as_deref());
        self.option_str(name.as_deref());
        self.option_str(term.as_deref());
        self.option_str(content.as_deref());
        self.str(channel);
    }

    fn order(&mut self, order: &Order) {
        let Order {
            status,
            revenue,
            refunded,
            currency,
            placed_ms,
            updated_ms,
            updated_offset,
            channel,
            product_ids,
            item_count,
        } = order;
        self.u8(match status {
            OrderStatus::Completed => 0,
            OrderStatus::PartiallyRefunded => 1,
            OrderStatus::Refunded => 2,
            OrderStatus::Cancelled => 3,
            OrderStatus::Unknown => 4,
        });
        self.f64(*revenue);
        self.f64(*refunded);
        self.option_str(currency.as_deref());
        self.opt_i64(*placed_ms);
        self.i64(*updated_ms);
        self.u64(*updated_offset);
        self.str(channel);
        self.u64(product_ids.len() as u64);
        for product in product_ids {
            self.str(product);
        }
        self.u64(*item_count);
    }

    fn commerce(&mut self, commerce: &Commerce) {
        let Commerce {
            order_count,
            cancelled_count,
            refund_count,
            gross_revenue,
            refunded,
            net_revenue,
            revenue_by_currency,
            average_order_value,
            first_order_ms,
            last_order_ms,
            last_order_id,
        } = commerce;
        self.u64(*order_count);
        self.u64(*cancelled_count);
        self.u64(*refund_count);
        self.f64(*gross_revenue);
        self.f64(*refunded);
        self.f64(*net_revenue);
        self.u64(revenue_by_currency.len() as u64);
        for (currency, revenue) in revenue_by_currency {
            self.str(currency);
            self.f64(*revenue);
        }
        self.f64(*average_order_value);
        self.opt_i64(*first_order_ms);
        self.opt_i64(*last_order_ms);
        self.option_str(last_order_id.as_deref());
    }

    fn profile(&mut self, profile: &Profile) {
        // Destructured so that a new field fails to compile here instead of being dropped.
        let Profile {
            id,
            first_seen_ms,
            last_seen_ms,
            traits,
            channels,
            sources,
            devices,
            first_touch,
            last_touch,
            event_counts,
            event_total,
            orders,
            commerce,
            merged_from,
            computed_traits,
        } = profile;
        self.str(id);
        self.i64(*first_seen_ms);
        self.i64(*last_seen_ms);
        self.u64(traits.len() as u64);
        for (key, trait_value) in traits {
            let TraitValue {
                value,
                updated_ms,
                offset,
            } = trait_value;
            self.str(key);
            self.value(value);
            self.i64(*updated_ms);
            self.u64(*offset);
        }
        self.usages(channels);
        self.usages(sources);
        self.u64(devices.len() as u64);
        for (key, device) in devices {
            let Device {
                kind,
                model,
                manufacturer,
                os,
                usage,
            } = device;
            self.str(key);
            self.option_str(kind.as_deref());
            self.option_str(model.as_deref());
            self.option_str(manufacturer.as_deref());
            self.option_str(os.as_deref());
            self.usage(usage);
        }
        self.touch(first_touch.as_ref());
        self.touch(last_touch.as_ref());
        self.u64(event_counts.len() as u64);
        for (key, count) in event_counts {
            self.str(key);
            self.u64(*count);
        }
        self.u64(*event_total);
        self.u64(orders.len() as u64);
        for (key, order) in orders {
            self.str(key);
            self.order(order);
        }
        self.commerce(commerce);
        self.u64(merged_from.len() as u64);
        for merged in merged_from {
            self.str(merged);
        }
        self.u64(computed_traits.len() as u64);
        for (key, value) in computed_traits {
            self.str(key);
            self.value(value);
        }
    }
}

/// The profile layout's compound parts, read with the shared primitives.
trait ReadParts {
    fn option_string(&mut self) -> Result<Option<String>, CodecError>;
    fn usage(&mut self) -> Result<Usage, CodecError>;
    fn usages(&mut self) -> Result<BTreeMap<String, Usage>, CodecError>;
    fn touch(&mut self) -> Result<Option<Touch>, CodecError>;
    fn order(&mut self) -> Result<Order, CodecError>;
    fn commerce(&mut self) -> Result<Commerce, CodecError>;
    fn profile(&mut self) -> Result<Profile, CodecError>;
}

impl ReadParts for Reader<'_> {
    fn option_string(&mut self) -> Result<Option<String>, CodecError> {
        if self.bool()? {
            Ok(Some(self.str()?.to_owned()))
        } else {
            Ok(None)
        }
    }

    fn usage(&mut self) -> Result<Usage, CodecError> {
        Ok(Usage {
            first_seen_ms: self.i64()?,
            last_seen_ms: self.i64()?,
            events: self.u64()?,
        })
    }

    fn usages(&mut self) -> Result<BTreeMap<String, Usage>, CodecError> {
        let count = self.len()?;
        let mut usages = BTreeMap::new();
        for _ in 0..count {
            let key = self.str()?.to_owned();
            usages.insert(key, self.usage()?);
        }
        Ok(usages)
    }

    fn touch(&mut self) -> Result<Option<Touch>, CodecError> {
        if !self.bool()? {
            return Ok(None);
        }
        Ok(Some(Touch {
            at_ms: self.i64()?,
            offset: self.u64()?,
            source: self.option_string()?,
            medium: self.option_string()?,
            name: self.option_string()?,
            term: self.option_string()?,
            content: self.option_string()?,
            channel: self.str()?.to_owned(),
        }))
    }

    fn order(&mut self) -> Result<Order, CodecError> {
        let status = match self.u8()? {
            0 => OrderStatus::Completed,
            1 => OrderStatus::PartiallyRefunded,
            2 => OrderStatus::Refunded,
            3 => OrderStatus::Cancelled,
            4 => OrderStatus::Unknown,
            _ => return Err(self.error("unknown order status")),
        };
        let revenue = self.f64()?;
        let refunded = self.f64()?;
        let currency = self.option_string()?;
        let placed_ms = self.opt_i64()?;
        let updated_ms = self.i64()?;
        let updated_offset = self.u64()?;
        let channel = self.str()?.to_owned();
        let product_count = self.len()?;
        let mut product_ids = Vec::with_capacity(product_count);
        for _ in 0..product_count {
            product_ids.push(self.str()?.to_owned());
        }
        Ok(Order {
            status,
            revenue,
            refunded,
            currency,
            placed_ms,
            updated_ms,
            updated_offset,
            channel,
            product_ids,
            item_count: self.u64()?,
        })
    }

    fn commerce(&mut self) -> Result<Commerce, CodecError> {
        let order_count = self.u64()?;
        let cancelled_count = self.u64()?;
        let refund_count = self.u64()?;
        let gross_revenue = self.f64()?;
        let refunded = self.f64()?;
        let net_revenue = self.f64()?;
        let currencies = self.len()?;
        let mut revenue_by_currency = BTreeMap::new();
        for _ in 0..currencies {
            let currency = self.str()?.to_owned();
            revenue_by_currency.insert(currency, self.f64()?);
        }
        Ok(Commerce {
            order_count,
            cancelled_count,
            refund_count,
            gross_revenue,
            refunded,
            net_revenue,
            revenue_by_currency,
            average_order_value: self.f64()?,
            first_order_ms: self.opt_i64()?,
            last_order_ms: self.opt_i64()?,
            last_order_id: self.option_string()?,
        })
    }

    fn profile(&mut self) -> Result<Profile, CodecError> {
        let id = self.str()?.to_owned();
        let first_seen_ms = self.i64()?;
        let last_seen_ms = self.i64()?;
        let trait_count = self.len()?;
        let mut traits = BTreeMap::new();
        for _ in 0..trait_count {
            let key = self.str()?.to_owned();
            let value = self.value()?;
            let updated_ms = self.i64()?;
            let offset = self.u64()?;
            traits.insert(
                key,
                TraitValue {
                    value,
                    updated_ms,
                    offset,
                },
            );
        }
        let channels = self.usages()?;
        let sources = self.usages()?;
        let device_count = self.len()?;
        let mut devices = BTreeMap::new();
        for _ in 0..device_count {
            let key = self.str()?.to_owned();
            let device = Device {
                kind: self.option_string()?,
                model: self.option_string()?,
                manufacturer: self.option_string()?,
                os: self.option_string()?,
                usage: self.usage()?,
            };
            devices.insert(key, device);
        }
        let first_touch = self.touch()?;
        let last_touch = self.touch()?;
        let count_entries = self.len()?;
        let mut event_counts = BTreeMap::new();
        for _ in 0..count_entries {
            let key = self.str()?.to_owned();
            event_counts.insert(key, self.u64()?);
        }
        let event_total = self.u64()?;
        let order_count = self.len()?;
        let mut orders = BTreeMap::new();
        for _ in 0..order_count {
            let key = self.str()?.to_owned();
            orders.insert(key, self.order()?);
        }
        let commerce = self.commerce()?;
        let merged_count = self.len()?;
        let mut merged_from = Vec::with_capacity(merged_count);
        for _ in 0..merged_count {
            merged_from.push(self.str()?.to_owned());
        }
        let computed_count = self.len()?;
        let mut computed_traits = BTreeMap::new();
        for _ in 0..computed_count {
            let key = self.str()?.to_owned();
            computed_traits.insert(key, self.value()?);
        }
        Ok(Profile {
            id,
            first_seen_ms,
            last_seen_ms,
            traits,
            channels,
            sources,
            devices,
            first_touch,
            last_touch,
            event_counts,
            event_total,
            orders,
            commerce,
            merged_from,
            computed_traits,
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    fn generated_profiles() -> Vec<Profile> {
        let mut profiles: BTreeMap<String, Profile> = BTreeMap::new();
        let generator = atrium_gen::Generator::new(atrium_gen::GenConfig::for_events(11, 4_000));
        for (offset, event) in generator.enumerate() {
            let key = event
                .get("userId")
                .or_else(|| event.get("anonymousId"))
                .and_then(Value::as_str)
                .unwrap_or("none")
                .to_owned();
            let facts = atrium_profiles::EventFacts {
                offset: offset as u64,
                time_ms: 1_700_000_000_000 + offset as i64 * 1_000,
                source: "web",
                channel: "web",
            };
            profiles
                .entry(key.clone())
                .or_insert_with(|| Profile::new(key, facts.time_ms))
                .apply(&event, facts);
        }
        profiles.into_values().collect()
    }

    #[test]
    fn generated_profiles_round_trip_and_old_json_rows_still_decode() {
        let profiles = generated_profiles();
        assert!(
            profiles.iter().any(|profile| !profile.orders.is_empty()),
            "the stream had orders"
        );
        assert!(profiles.iter().any(|profile| !profile.traits.is_empty()));
        for profile in &profiles {
            let bytes = encode_profile(profile);
            let decoded = decode_profile(&bytes).unwrap();
            assert_eq!(&decoded, profile);
            assert_eq!(encode_profile(&decoded), bytes, "canonical");
            let json = serde_json::to_vec(profile).unwrap();
            assert_eq!(&decode_profile(&json).unwrap(), profile, "JSON row");
            assert!(bytes.len() < json.len(), "{} < {}", bytes.len(), json.len());
        }
    }

    #[test]
    fn corrupt_bytes_are_errors_not_panics() {
        let profile = generated_profiles().into_iter().last().unwrap();
        let bytes = encode_profile(&profile);
        for cut in 0..bytes.len() {
            assert!(
                decode_profile(&bytes[..cut]).is_err(),
                "prefix of {cut} bytes"
            );
        }
        let mut extended = bytes.clone();
        extended.push(0);
        assert!(decode_profile(&extended).is_err());
        for position in 1..bytes.len() {
            let mut flipped = bytes.clone();
            flipped[position] ^= 0xff;
            let _ = decode_profile(&flipped);
        }
    }

    mod properties {
        use proptest::prelude::*;
        use serde_json::Value;

        use super::super::*;

        fn json_value() -> impl Strategy<Value = Value> {
            let leaf = prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::Bool),
                any::<u64>().prop_map(Value::from),
                any::<i64>().prop_map(Value::from),
                (-1e12f64..1e12).prop_map(Value::from),
                ".{0,12}".prop_map(Value::String),
            ];
            leaf.prop_recursive(3, 24, 4, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                    prop::collection::vec((".{0,6}", inner), 0..4)
                        .prop_map(|entries| Value::Object(entries.into_iter().collect())),
                ]
            })
        }

        fn usage() -> impl Strategy<Value = Usage> {
            (any::<i64>(), any::<i64>(), any::<u64>()).prop_map(
                |(first_seen_ms, last_seen_ms, events)| Usage {
                    first_seen_ms,
                    last_seen_ms,
                    events,
                },
            )
        }

        fn touch() -> impl Strategy<Value = Option<Touch>> {
            prop::option::of(
                (
                    any::<i64>(),
                    any::<u64>(),
                    prop::option::of(".{0,5}"),
                    prop::option::of(".{0,5}"),
                    prop::option::of(".{0,5}"),
                    prop::option::of(".{0,5}"),
                    prop::option::of(".{0,5}"),
                    ".{0,5}",
                )
                    .prop_map(
                        |(at_ms, offset, source, medium, name, term, content, channel)| Touch {
                            at_ms,
                            offset,
                            source,
                            medium,
                            name,
                            term,
                            content,
                            channel,
                        },
                    ),
            )
        }

        fn order() -> impl Strategy<Value = Order> {
            (
                0u8..5,
                any::<f64>(),
                any::<f64>(),
                prop::option::of("[A-Z]{3}"),
                prop::option::of(any::<i64>()),
                any::<i64>(),
                any::<u64>(),
                ".{0,5}",
                prop::collection::vec(".{0,5}", 0..3),
                any::<u64>(),
            )
                .prop_map(
                    |(
                        status,
                        revenue,
                        refunded,
                        currency,
                        placed_ms,
                        updated_ms,
                        updated_offset,
                        channel,
                        product_ids,
                        item_count,
                    )| Order {
                        status: [
                            OrderStatus::Completed,
                            OrderStatus::PartiallyRefunded,
                            OrderStatus::Refunded,
                            OrderStatus::Cancelled,
                            OrderStatus::Unknown,
                        ][status as usize],
                        revenue,
                        refunded,
                        currency,
                        placed_ms,
                        updated_ms,
                        updated_offset,
                        channel,
                        product_ids,
                        item_count,
                    },
                )
        }

        fn commerce() -> impl Strategy<Value = Commerce> {
            (
                (any::<u64>(), any::<u64>(), any::<u64>()),
                (any::<f64>(), any::<f64>(), any::<f64>(), any::<f64>()),
                prop::collection::btree_map("[A-Z]{3}", any::<f64>(), 0..3),
                (
                    prop::option::of(any::<i64>()),
                    prop::option::of(any::<i64>()),
                    prop::option::of(".{0,5}"),
                ),
            )
                .prop_map(
                    |(
                        (order_count, cancelled_count, refund_count),
                        (gross_revenue, refunded, net_revenue, average_order_value),
                        revenue_by_currency,
                        (first_order_ms, last_order_ms, last_order_id),
                    )| Commerce {
                        order_count,
                        cancelled_count,
                        refund_count,
                        gross_revenue,
                        refunded,
                        net_revenue,
                        revenue_by_currency,
                        average_order_value,
                        first_order_ms,
                        last_order_ms,
                        last_order_id,
                    },
                )
        }

        fn profile() -> impl Strategy<Value = Profile> {
            (
                (".{0,20}", any::<i64>(), any::<i64>()),
                prop::collection::btree_map(
                    ".{0,8}",
                    (json_value(), any::<i64>(), any::<u64>()).prop_map(
                        |(value, updated_ms, offset)| TraitValue {
                            value,
                            updated_ms,
                            offset,
                        },
                    ),
                    0..4,
                ),
                prop::collection::btree_map(".{0,5}", usage(), 0..3),
                prop::collection::btree_map(".{0,5}", usage(), 0..3),
                prop::collection::btree_map(
                    ".{0,5}",
                    (
                        prop::option::of(".{0,4}"),
                        prop::option::of(".{0,4}"),
                        prop::option::of(".{0,4}"),
                        prop::option::of(".{0,4}"),
                        usage(),
                    )
                        .prop_map(|(kind, model, manufacturer, os, usage)| {
                            Device {
                                kind,
                                model,
                                manufacturer,
                                os,
                                usage,
                            }
                        }),
                    0..3,
                ),
                (touch(), touch()),
                (
                    prop::collection::btree_map(".{0,8}", any::<u64>(), 0..4),
                    any::<u64>(),
                ),
                prop::collection::btree_map(".{0,6}", order(), 0..3),
                commerce(),
                prop::collection::vec(".{0,6}", 0..3),
                prop::collection::btree_map(".{0,6}", json_value(), 0..3),
            )
                .prop_map(
                    |(
                        (id, first_seen_ms, last_seen_ms),
                        traits,
                        channels,
                        sources,
                        devices,
                        (first_touch, last_touch),
                        (event_counts, event_total),
                        orders,
                        commerce,
                        merged_from,
                        computed_traits,
                    )| Profile {
                        id,
                        first_seen_ms,
                        last_seen_ms,
                        traits,
                        channels,
                        sources,
                        devices,
                        first_touch,
                        last_touch,
                        event_counts,
                        event_total,
                        orders,
                        commerce,
                        merged_from,
                        computed_traits,
                    },
                )
        }

        /// Floats compared by bits: NaN round-trips too, and `PartialEq` would reject it.
        fn same(left: &Profile, right: &Profile) -> bool {
            encode_profile(left) == encode_profile(right)
                && format!("{left:?}") == format!("{right:?}")
        }

        proptest! {
            #[test]
            fn binary_round_trip_is_exact_and_canonical(profile in profile()) {
                let bytes = encode_profile(&profile);
                let decoded = decode_profile(&bytes).unwrap();
                prop_assert!(same(&decoded, &profile));
                prop_assert_eq!(encode_profile(&decoded), bytes);
            }

            #[test]
            fn json_rows_decode_to_the_same_profile(profile in profile()) {
                // JSON cannot hold non-finite floats; rows written as JSON never had any.
                let json = serde_json::to_vec(&profile).unwrap();
                let through_json = serde_json::from_slice::<Profile>(&json).ok();
                prop_assume!(through_json.is_some_and(|decoded| same(&decoded, &profile)));
                prop_assert!(same(&decode_profile(&json).unwrap(), &profile));
            }

            #[test]
            fn arbitrary_bytes_never_panic(mut bytes in prop::collection::vec(any::<u8>(), 0..200)) {
                if let Some(first) = bytes.first_mut() {
                    *first = PROFILE_TAG;
                }
                let _ = decode_profile(&bytes);
            }
        }
    }
}
