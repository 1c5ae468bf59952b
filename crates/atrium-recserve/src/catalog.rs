//! The catalog: validated items (products or content) by id, on the dense indices the models use.
//!
//! An item id seen in an event before the catalog defines it gets an index too (so its
//! interactions count), but it is not *listed*: it is never recommended until a catalog write
//! defines it. Deleted items keep their index and stop being listed.

use std::collections::HashMap;

use atrium_recs::{Catalog, CatalogItem, ItemIndex};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Longest accepted item id.
pub const MAX_ID_CHARS: usize = 200;
/// Most items in one catalog write.
pub const MAX_ITEMS_PER_WRITE: usize = 5_000;
const MAX_TEXT_CHARS: usize = 10_000;
const MAX_ATTRIBUTES: usize = 100;

/// Fields an item may have.
pub const ITEM_FIELDS: [&str; 13] = [
    "id",
    "name",
    "category",
    "brand",
    "price",
    "currency",
    "available",
    "stock",
    "attributes",
    "image_url",
    "url",
    "text",
    "replenish_every_days",
];

/// A catalog item as the API accepts and returns it (after validation).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Item {
    pub id: String,
    pub name: String,
    /// Category path from the root, e.g. `["Apparel", "Shoes", "Running"]`.
    pub category: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub brand: Option<String>,
    pub price: f64,
    pub currency: String,
    /// Whether the item can be sold at all (discontinued items are `false`).
    pub available: bool,
    /// Units in stock, when the shop tracks them; 0 means out of stock.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stock: Option<u64>,
    /// Free-form attributes (strings, numbers, booleans).
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub attributes: Map<String, Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Description text (used by content similarity).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replenish_every_days: Option<u32>,
}

impl Item {
    /// In stock: available and not at zero units.
    pub fn in_stock(&self) -> bool {
        self.available && self.stock != Some(0)
    }

    /// The category path joined with ` > ` (what category filters match on).
    pub fn category_path(&self) -> String {
        self.category.join(" > ")
    }

    /// The item as the models see it.
    pub fn model_item(&self) -> CatalogItem {
        let mut title = self.name.clone();
        if let Some(text) = &self.text {
            title.push(' ');
            title.push_str(text);
        }
        let attributes = self
            .attributes
            .iter()
            .map(|(name, value)| {
                let text = match value {
                    Value::String(text) => text.clone(),
                    other => other.to_string(),
                };
                (name.clone(), text)
            })
            .collect();
        CatalogItem {
            product_id: self.id.clone(),
            title,
            category: self.category_path(),
            brand: self.brand.clone(),
            price: self.price,
            in_stock: self.in_stock(),
            attributes,
            replenish_every_days: self.replenish_every_days,
        }
    }

    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).expect("items always serialize")
    }
}

/// What is wrong with an item, and where (`items[3].price`).
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct ItemError {
    pub path: String,
    pub message: String,
}

fn item_error(path: &str, field: &str, message: impl Into<String>) -> ItemError {
    ItemError {
        path: if field.is_empty() {
            path.to_owned()
        } else {
            format!("{path}.{field}")
        },
        message: message.into(),
    }
}

/// Checks an item id: 1 to 200 characters, no control characters, no `/` (ids go in paths).
pub fn check_id(id: &str) -> Result<(), String> {
    if id.is_empty() || id.chars().count() > MAX_ID_CHARS {
        return Err(format!("an item id is 1 to {MAX_ID_CHARS} characters"));
    }
    if id.chars().any(|c| c.is_control() || c == '/') || id.trim() != id {
        return Err(
            "an item id has no control characters, no `/` and no surrounding spaces".into(),
        );
    }
    Ok(())
}

fn optional_string(
    object: &Map<String, Value>,
    path: &str,
    field: &str,
    max_chars: usize,
) -> Result<Option<String>, ItemError> {
    match object.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) if text.chars().count() <= max_chars => Ok(Some(text.clone())),
        Some(Value::String(_)) => Err(item_error(
            path,
            field,
            format!("longer than {max_chars} characters"),
        )),
        Some(_) => Err(item_error(path, field, "must be a string")),
    }
}

fn check_url(url: &str, path: &str, field: &str) -> Result<(), ItemError> {
    if url.starts_with("https://") || url.starts_with("http://") || url.starts_with('/') {
        Ok(())
    } else {
        Err(item_error(
            path,
            field,
            "must be an absolute http(s) URL or a path starting with /",
        ))
    }
}

/// Validates one item of a catalog write; `path` names it in errors (e.g. `items[3]`).
pub fn validate_item(value: &Value, path: &str) -> Result<Item, ItemError> {
    let Some(object) = value.as_object() else {
        return Err(item_error(path, "", "an item is a JSON object"));
    };
    if let Some(unknown) = object
        .keys()
        .find(|field| !ITEM_FIELDS.contains(&field.as_str()))
    {
        return Err(item_error(
            path,
            unknown,
            format!("unknown field; expected one of {ITEM_FIELDS:?}"),
        ));
    }
    let id = match object.get("id") {
        Some(Value::String(id)) => id.clone(),
        Some(Value::Number(number)) => number.to_string(),
        Some(_) => return Err(item_error(path, "id", "must be a string")),
        None => return Err(item_error(path, "id", "is required")),
    };
    check_id(&id).map_err(|message| item_error(path, "id", message))?;
    let name = optional_string(object, path, "name", 1_000)?.unwrap_or_else(|| id.clone());
    let category = match object.get("category") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(text)) => text
            .split('>')
            .map(str::trim)
            .filter(|part| !part.is_empty())
            .map(str::to_owned)
            .collect(),
        Some(Value::Array(parts)) => {
            let mut out = Vec::with_capacity(parts.len());
            for (position, part) in parts.iter().enumerate() {
                match part.as_str().map(str::trim) {
                    Some(text) if !text.is_empty() && !text.contains('>') => {
                        out.push(text.to_owned())
                    }
                    _ => {
                        return Err(item_error(
                            path,
                            &format!("category[{position}]"),
                            "a category level is a non-empty string without `>`",
                        ));
                    }
                }
            }
            out
        }
        Some(_) => {
            return Err(item_error(
                path,
                "category",
                "a path: \"Apparel > Shoes\" or [\"Apparel\", \"Shoes\"]",
            ));
        }
    };
    if category.len() > 10 || category.iter().any(|part| part.chars().count() > 200) {
        return Err(item_error(
            path,
            "category",
            "at most 10 levels of at most 200 characters",
        ));
    }
    let brand = optional_string(object, path, "brand", 200)?;
    let price = match object.get("price") {
        None | Some(Value::Null) => 0.0,
        Some(value) => match value.as_f64() {
            Some(price) if price.is_finite() && price >= 0.0 => price,
            _ => {
                return Err(item_error(path, "price", "must be a number at least 0"));
            }
        },
    };
    let currency = optional_string(object, path, "currency", 3)?.unwrap_or_else(|| "USD".into());
    if currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(item_error(path, "currency", "an ISO 4217 code such as USD"));
    }
    let available = match object.get("available") {
        None | Some(Value::Null) => true,
        Some(Value::Bool(available)) => *available,
        Some(_) => return Err(item_error(path, "available", "must be true or false")),
    };
    let stock = match object.get("stock") {
        None | Some(Value::Null) => None,
        Some(value) => Some(value.as_u64().ok_or_else(|| {
            item_error(path, "stock", "must be a whole number of units, at least 0")
        })?),
    };
    let attributes = match object.get("attributes") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(attributes)) => {
            if attributes.len() > MAX_ATTRIBUTES {
                return Err(item_error(
                    path,
                    "attributes",
                    format!("at most {MAX_ATTRIBUTES} attributes"),
                ));
            }
            for (name, value) in attributes {
                let ok = match value {
                    Value::String(text) => text.chars().count() <= 1_000,
                    Value::Number(_) | Value::Bool(_) => true,
                    _ => false,
                };
                if !ok || name.is_empty() || name.chars().count() > 100 {
                    return Err(item_error(
                        path,
                        &format!("attributes.{name}"),
                        "an attribute is a string (up to 1,000 characters), number or boolean",
                    ));
                }
            }
            attributes.clone()
        }
        Some(_) => return Err(item_error(path, "attributes", "must be an object")),
    };
    let image_url = optional_string(object, path, "image_url", 2_000)?;
    if let Some(url) = &image_url {
        check_url(url, path, "image_url")?;
    }
    let url = optional_string(object, path, "url", 2_000)?;
    if let Some(url) = &url {
        check_url(url, path, "url")?;
    }
    let text = optional_string(object, path, "text", MAX_TEXT_CHARS)?;
    let replenish_every_days = match object.get("replenish_every_days") {
        None | Some(Value::Null) => None,
        Some(value) => match value.as_u64() {
            Some(days) if (1..=3_650).contains(&days) => Some(days as u32),
            _ => {
                return Err(item_error(
                    path,
                    "replenish_every_days",
                    "a whole number of days from 1 to 3650",
                ));
            }
        },
    };
    Ok(Item {
        id,
        name,
        category,
        brand,
        price,
        currency,
        available,
        stock,
        attributes,
        image_url,
        url,
        text,
        replenish_every_days,
    })
}

/// Validates a catalog write: `{"items": [...]}` or a bare array. Every error is reported.
pub fn validate_items(body: &Value) -> Result<Vec<Item>, Vec<ItemError>> {
    let items = match body {
        Value::Array(items) => items,
        Value::Object(object) => match object.get("items") {
            Some(Value::Array(items)) if object.len() == 1 => items,
            _ => {
                return Err(vec![ItemError {
                    path: "items".into(),
                    message: "send {\"items\": [ ... ]} with the items to create or replace".into(),
                }]);
            }
        },
        _ => {
            return Err(vec![ItemError {
                path: "items".into(),
                message: "send {\"items\": [ ... ]}".into(),
            }]);
        }
    };
    if items.is_empty() || items.len() > MAX_ITEMS_PER_WRITE {
        return Err(vec![ItemError {
            path: "items".into(),
            message: format!("1 to {MAX_ITEMS_PER_WRITE} items per write"),
        }]);
    }
    let mut valid = Vec::with_capacity(items.len());
    let mut errors = Vec::new();
    for (position, value) in items.iter().enumerate() {
        match validate_item(value, &format!("items[{position}]")) {
            Ok(item) => valid.push(item),
            Err(error) => errors.push(error),
        }
    }
    if errors.is_empty() {
        Ok(valid)
    } else {
        Err(errors)
    }
}

/// The catalog on dense indices: the models' [`Catalog`] plus the API's view of each item.
#[derive(Clone, Debug, Default)]
pub struct ItemCatalog {
    index_of: HashMap<String, ItemIndex>,
    /// The validated item, when the catalog defines it (and it was not deleted).
    items: Vec<Option<Item>>,
    models: Catalog,
    listed_count: usize,
}

impl ItemCatalog {
    /// The index of `id`, creating an unlisted placeholder the first time it is seen.
    pub fn intern(&mut self, id: &str) -> ItemIndex {
        if let Some(index) = self.index_of.get(id) {
            return *index;
        }
        let mut placeholder = CatalogItem::new(id, "", 0.0);
        placeholder.in_stock = false;
        let index = self.models.push(placeholder);
        self.items.push(None);
        self.index_of.insert(id.to_owned(), index);
        index
    }

    pub fn index(&self, id: &str) -> Option<ItemIndex> {
        self.index_of.get(id).copied()
    }

    /// Creates or replaces an item.
    pub fn put(&mut self, item: Item) -> ItemIndex {
        let index = self.intern(&item.id);
        self.models.replace(index, item.model_item());
        if self.items[index as usize].is_none() {
            self.listed_count += 1;
        }
        self.items[index as usize] = Some(item);
        index
    }

    /// Removes an item from the listing; returns whether it was listed.
    pub fn delete(&mut self, id: &str) -> bool {
        let Some(index) = self.index(id) else {
            return false;
        };
        let was_listed = self.items[index as usize].take().is_some();
        if was_listed {
            self.listed_count -= 1;
            self.models.set_in_stock(index, false);
        }
        was_listed
    }

    pub fn item(&self, index: ItemIndex) -> Option<&Item> {
        self.items.get(index as usize).and_then(Option::as_ref)
    }

    pub fn get(&self, id: &str) -> Option<&Item> {
        self.index(id).and_then(|index| self.item(index))
    }

    /// Whether the item may be recommended at all (defined and not deleted).
    pub fn is_listed(&self, index: ItemIndex) -> bool {
        self.item(index).is_some()
    }

    pub fn id(&self, index: ItemIndex) -> &str {
        &self.models.item(index).product_id
    }

    /// Every index, listed or not.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn listed_count(&self) -> usize {
        self.listed_count
    }

    pub fn models(&self) -> &Catalog {
        &self.models
    }

    /// The catalog's category paths equal to `prefix` or below it (`Apparel` matches
    /// `Apparel > Shoes`).
    pub fn categories_under(&self, prefix: &str) -> Vec<String> {
        let prefix = normalize_category(prefix);
        self.models
            .categories()
            .iter()
            .filter(|category| {
                *category == &prefix
                    || (category.starts_with(&prefix)
                        && category[prefix.len()..].starts_with(" > "))
            })
            .cloned()
            .collect()
    }
}

/// `Apparel>Shoes` and `Apparel > Shoes` name the same category.
pub fn normalize_category(path: &str) -> String {
    path.split('>')
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join(" > ")
}
