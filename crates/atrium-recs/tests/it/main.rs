mod als;
mod covisit;
mod eval;
mod interaction;
mod models;
mod rules;
mod shop;
