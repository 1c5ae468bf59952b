//! What the recommenders know about items: category, price, stock, attributes.

use crate::ItemIndex;

#[derive(Clone, Debug, PartialEq)]
pub struct CatalogItem {
    /// The shop's product id.
    pub product_id: String,
    pub title: String,
    pub category: String,
    pub brand: Option<String>,
    pub price: f64,
    pub in_stock: bool,
    /// Free-form attributes as `(name, value)` pairs, e.g. `("color", "red")`.
    pub attributes: Vec<(String, String)>,
    /// For consumables: how often a shopper typically buys it again.
    pub replenish_every_days: Option<u32>,
}

impl CatalogItem {
    pub fn new(product_id: &str, category: &str, price: f64) -> CatalogItem {
        CatalogItem {
            product_id: product_id.to_owned(),
            title: product_id.to_owned(),
            category: category.to_owned(),
            brand: None,
            price,
            in_stock: true,
            attributes: Vec::new(),
            replenish_every_days: None,
        }
    }
}

/// Items by dense index; index `i` is `ItemIndex` `i` everywhere in this crate.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Catalog {
    items: Vec<CatalogItem>,
    categories: Vec<String>,
    category_of: Vec<u32>,
}

impl Catalog {
    pub fn new(items: Vec<CatalogItem>) -> Catalog {
        let mut categories: Vec<String> = Vec::new();
        let mut category_of = Vec::with_capacity(items.len());
        for item in &items {
            let position = match categories.iter().position(|c| *c == item.category) {
                Some(position) => position,
                None => {
                    categories.push(item.category.clone());
                    categories.len() - 1
                }
            };
            category_of.push(position as u32);
        }
        Catalog {
            items,
            categories,
            category_of,
        }
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn item(&self, item: ItemIndex) -> &CatalogItem {
        &self.items[item as usize]
    }

    pub fn items(&self) -> &[CatalogItem] {
        &self.items
    }

    /// Appends an item; returns its index (the catalog's previous length).
    pub fn push(&mut self, item: CatalogItem) -> ItemIndex {
        let index = self.items.len() as ItemIndex;
        let slot = self.category_slot(&item.category);
        self.category_of.push(slot);
        self.items.push(item);
        index
    }

    /// Replaces the item at `item` (its category may change).
    pub fn replace(&mut self, item: ItemIndex, entry: CatalogItem) {
        let slot = self.category_slot(&entry.category);
        self.category_of[item as usize] = slot;
        self.items[item as usize] = entry;
    }

    fn category_slot(&mut self, category: &str) -> u32 {
        match self.categories.iter().position(|c| c == category) {
            Some(position) => position as u32,
            None => {
                self.categories.push(category.to_owned());
                (self.categories.len() - 1) as u32
            }
        }
    }

    /// Marks an item in or out of stock (the real-time stock feed).
    pub fn set_in_stock(&mut self, item: ItemIndex, in_stock: bool) {
        self.items[item as usize].in_stock = in_stock;
    }

    /// Dense category index of `item`.
    pub fn category_index(&self, item: ItemIndex) -> u32 {
        self.category_of[item as usize]
    }

    pub fn categories(&self) -> &[String] {
        &self.categories
    }

    pub fn category_by_name(&self, name: &str) -> Option<u32> {
        self.categories
            .iter()
            .position(|c| c == name)
            .map(|p| p as u32)
    }
}
