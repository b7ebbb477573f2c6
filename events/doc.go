// Package events relays change events from a store's transactional outbox
// to the bus. The envelope and subjects are the domain language's
// (plinth.BuildEvent); the bus and the listener library are package nats.
//
// # Outbox and relay
//
// A write appends its event to the outbox in the same transaction as the
// change (plinth.EventTx), so nothing is published that was not committed
// and nothing committed is lost. Relay publishes the outbox in order and
// marks entries sent; see Relay for fail-over and exactly-once delivery
// into the stream.
package events
