//! What a recommendation request may say, parsed from a JSON body or query parameters, with
//! errors that name the field.

use serde::Deserialize;
use serde_json::Value;

use crate::{Placement, RecError};

/// Most items one request may ask for.
pub const MAX_K: usize = 100;
const MAX_LIST: usize = 200;

/// Business rules: hard filters, boosts, pins and diversity.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Rules {
    /// Only items in stock (default true).
    pub in_stock: bool,
    /// Only items in these category paths or below them.
    pub categories: Vec<String>,
    pub min_price: Option<f64>,
    pub max_price: Option<f64>,
    /// Leave out items the profile bought.
    pub exclude_purchased: bool,
    /// Leave out items the profile viewed or interacted with in any way.
    pub exclude_seen: bool,
    /// Item ids never to return.
    pub exclude: Vec<String>,
    pub boosts: Vec<BoostRule>,
    pub pins: Vec<PinRule>,
    /// At most this many items per category.
    pub max_per_category: Option<usize>,
}

impl Default for Rules {
    fn default() -> Self {
        Rules {
            in_stock: true,
            categories: Vec::new(),
            min_price: None,
            max_price: None,
            exclude_purchased: false,
            exclude_seen: false,
            exclude: Vec::new(),
            boosts: Vec::new(),
            pins: Vec::new(),
            max_per_category: None,
        }
    }
}

/// Multiplies the scores of a category's items or of one item (factor > 0).
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BoostRule {
    #[serde(default)]
    pub category: Option<String>,
    #[serde(default)]
    pub item: Option<String>,
    pub factor: f32,
}

/// Puts an item at a 0-based position (if it passes the filters).
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PinRule {
    pub item: String,
    #[serde(default)]
    pub position: usize,
}

/// One recommendation request.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecRequest {
    pub placement: String,
    /// Profile id or `kind:value` (e.g. `user_id:u-1`, `anonymous_id:a-1`).
    #[serde(default)]
    pub profile: Option<String>,
    #[serde(default)]
    pub item: Option<String>,
    #[serde(default)]
    pub cart: Vec<String>,
    /// For `trending`: only this category (path, or prefix of paths).
    #[serde(default)]
    pub category: Option<String>,
    #[serde(default = "default_k")]
    pub k: usize,
    /// Forces one model of the placement (otherwise the configured one, or the A/B split's).
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub rules: Rules,
}

fn default_k() -> usize {
    10
}

fn invalid(message: impl Into<String>) -> RecError {
    RecError::InvalidRequest(message.into())
}

impl RecRequest {
    /// From a JSON body (`POST /v1/recommendations`).
    pub fn from_json(body: &Value) -> Result<RecRequest, RecError> {
        let request: RecRequest = serde_json::from_value(body.clone())
            .map_err(|error| RecError::InvalidRules(error.to_string()))?;
        request.check()?;
        Ok(request)
    }

    /// From query parameters (`GET /v1/recommendations?placement=…`): `placement`, `profile`,
    /// `item`, `cart` and `categories` (comma-separated), `category`, `k`, `model`, `in_stock`,
    /// `min_price`, `max_price`, `exclude_purchased`, `exclude_seen`, `exclude`,
    /// `max_per_category`. Boosts and pins need the JSON body.
    pub fn from_query(pairs: &[(String, String)]) -> Result<RecRequest, RecError> {
        let mut request = RecRequest {
            placement: String::new(),
            profile: None,
            item: None,
            cart: Vec::new(),
            category: None,
            k: default_k(),
            model: None,
            rules: Rules::default(),
        };
        let list = |text: &str| -> Vec<String> {
            text.split(',')
                .map(str::trim)
                .filter(|part| !part.is_empty())
                .map(str::to_owned)
                .collect()
        };
        let flag = |name: &str, text: &str| -> Result<bool, RecError> {
            match text {
                "true" | "1" => Ok(true),
                "false" | "0" => Ok(false),
                _ => Err(RecError::InvalidRules(format!(
                    "`{name}` must be true or false"
                ))),
            }
        };
        let number = |name: &str, text: &str| -> Result<f64, RecError> {
            text.parse::<f64>()
                .ok()
                .filter(|value| value.is_finite())
                .ok_or_else(|| RecError::InvalidRules(format!("`{name}` must be a number")))
        };
        let mut placement = None;
        for (name, value) in pairs {
            match name.as_str() {
                "placement" => placement = Some(value.clone()),
                "profile" => request.profile = Some(value.clone()),
                "item" => request.item = Some(value.clone()),
                "cart" => request.cart = list(value),
                "category" => request.category = Some(value.clone()),
                "model" => request.model = Some(value.clone()),
                "k" => {
                    request.k = value.parse().map_err(|_| {
                        invalid(format!("`k` must be a whole number from 1 to {MAX_K}"))
                    })?
                }
                "in_stock" => request.rules.in_stock = flag(name, value)?,
                "categories" => request.rules.categories = list(value),
                "min_price" => request.rules.min_price = Some(number(name, value)?),
                "max_price" => request.rules.max_price = Some(number(name, value)?),
                "exclude_purchased" => request.rules.exclude_purchased = flag(name, value)?,
                "exclude_seen" => request.rules.exclude_seen = flag(name, value)?,
                "exclude" => request.rules.exclude = list(value),
                "max_per_category" => {
                    request.rules.max_per_category = Some(value.parse().map_err(|_| {
                        RecError::InvalidRules("`max_per_category` must be a whole number".into())
                    })?)
                }
                // Read-your-writes is handled by the caller.
                "min_offset" => {}
                other => {
                    return Err(invalid(format!(
                        "unknown parameter `{other}`; boosts and pins need POST with a JSON body"
                    )));
                }
            }
        }
        request.placement = placement.ok_or_else(|| {
            RecError::UnknownPlacement(format!(
                "`placement` is required: one of {}",
                Placement::names()
            ))
        })?;
        request.check()?;
        Ok(request)
    }

    fn check(&self) -> Result<(), RecError> {
        let placement = Placement::parse(&self.placement).ok_or_else(|| {
            RecError::UnknownPlacement(format!(
                "unknown placement `{}`: one of {}",
                self.placement,
                Placement::names()
            ))
        })?;
        if self.k == 0 || self.k > MAX_K {
            return Err(invalid(format!(
                "`k` is {}; it must be from 1 to {MAX_K}",
                self.k
            )));
        }
        if placement.needs_profile() && self.profile.is_none() {
            return Err(invalid(format!(
                "placement `{}` needs `profile` (a profile id or kind:value such as anonymous_id:a-1)",
                self.placement
            )));
        }
        match placement {
            Placement::Similar if self.item.is_none() => {
                return Err(invalid("placement `similar` needs `item`"));
            }
            Placement::BoughtTogether if self.item.is_none() && self.cart.is_empty() => {
                return Err(invalid(
                    "placement `bought_together` needs `item` or `cart`",
                ));
            }
            _ => {}
        }
        let rules = &self.rules;
        for (name, value) in [
            ("min_price", rules.min_price),
            ("max_price", rules.max_price),
        ] {
            if value.is_some_and(|price| !price.is_finite() || price < 0.0) {
                return Err(RecError::InvalidRules(format!(
                    "`rules.{name}` must be a number at least 0"
                )));
            }
        }
        if let (Some(min), Some(max)) = (rules.min_price, rules.max_price)
            && min > max
        {
            return Err(RecError::InvalidRules(format!(
                "`rules.min_price` ({min}) is above `rules.max_price` ({max})"
            )));
        }
        if rules.max_per_category == Some(0) {
            return Err(RecError::InvalidRules(
                "`rules.max_per_category` must be at least 1".into(),
            ));
        }
        if self.cart.len() > MAX_LIST
            || rules.exclude.len() > MAX_LIST
            || rules.categories.len() > MAX_LIST
            || rules.boosts.len() > MAX_LIST
            || rules.pins.len() > MAX_LIST
        {
            return Err(RecError::InvalidRules(format!(
                "cart, categories, exclude, boosts and pins hold at most {MAX_LIST} entries"
            )));
        }
        for (position, boost) in rules.boosts.iter().enumerate() {
            if boost.category.is_some() == boost.item.is_some() {
                return Err(RecError::InvalidRules(format!(
                    "`rules.boosts[{position}]` names exactly one of `category` or `item`"
                )));
            }
            if !boost.factor.is_finite() || boost.factor <= 0.0 || boost.factor > 1_000.0 {
                return Err(RecError::InvalidRules(format!(
                    "`rules.boosts[{position}].factor` must be above 0 and at most 1000"
                )));
            }
        }
        for (position, pin) in rules.pins.iter().enumerate() {
            if pin.position >= MAX_K {
                return Err(RecError::InvalidRules(format!(
                    "`rules.pins[{position}].position` must be below {MAX_K}"
                )));
            }
        }
        Ok(())
    }
}
