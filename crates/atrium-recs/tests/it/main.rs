mod als;
mod covisit;
mod eval;
mod interaction;
mod models;
mod retrieval;
mod rules;
mod shop;
