// Package state is the operator's state store: leases, deploy and failover
// journals, and the audit trail. It is a small versioned key-value store with
// compare-and-swap writes, the shape of a DynamoDB table with conditional
// writes (the AWS driver's backing) and of a bbolt file (the local platform's,
// Bolt below). Every write names the version it expects, so two operators
// cannot both win a lease or both advance a journal.
package state

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// ErrConflict means the item's version was not the one the write expected:
// someone else wrote first.
var ErrConflict = errors.New("state conflict: the item changed since it was read")

// ErrNotFound means no item has that key.
var ErrNotFound = errors.New("state: no such item")

// Item is one stored value with its version (0 means absent).
type Item struct {
	Key     string `json:"key"`
	Value   []byte `json:"value"`
	Version int64  `json:"version"`
}

// Store is what the engines need of a state store.
type Store interface {
	// Get returns the item, or ErrNotFound.
	Get(ctx context.Context, table, key string) (Item, error)
	// Put writes value if the item's current version is expect (0: the item
	// must not exist) and returns the new version; otherwise ErrConflict.
	Put(ctx context.Context, table, key string, value []byte, expect int64) (int64, error)
	// List returns the items whose keys start with prefix, in key order.
	List(ctx context.Context, table, prefix string) ([]Item, error)
}

// Bolt is a Store in a bbolt file. One process opens it (the local
// platform, which serves it to operators through its control API).
type Bolt struct{ db *bolt.DB }

// OpenBolt opens (creating if needed) the store file at path.
func OpenBolt(path string) (*Bolt, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("open state store %s: %w", path, err)
	}
	return &Bolt{db: db}, nil
}

// Close closes the file.
func (b *Bolt) Close() error { return b.db.Close() }

func validName(table, key string) error {
	if table == "" || strings.ContainsAny(table, "/\x00") {
		return fmt.Errorf("state: bad table name %q", table)
	}
	if key == "" && table != "" {
		return errors.New("state: empty key")
	}
	return nil
}

// Each stored value is 8 bytes of version followed by the data.
func encode(version int64, value []byte) []byte {
	out := make([]byte, 8+len(value))
	for i := range 8 {
		out[i] = byte(version >> (56 - 8*i))
	}
	copy(out[8:], value)
	return out
}

func decode(raw []byte) (int64, []byte) {
	if len(raw) < 8 {
		return 0, nil
	}
	var v int64
	for i := range 8 {
		v = v<<8 | int64(raw[i])
	}
	return v, append([]byte(nil), raw[8:]...)
}

// Get implements Store.
func (b *Bolt) Get(_ context.Context, table, key string) (Item, error) {
	if err := validName(table, key); err != nil {
		return Item{}, err
	}
	var it Item
	err := b.db.View(func(tx *bolt.Tx) error {
		bk := tx.Bucket([]byte(table))
		if bk == nil {
			return ErrNotFound
		}
		raw := bk.Get([]byte(key))
		if raw == nil {
			return ErrNotFound
		}
		it.Key = key
		it.Version, it.Value = decode(raw)
		return nil
	})
	return it, err
}

// Put implements Store.
func (b *Bolt) Put(_ context.Context, table, key string, value []byte, expect int64) (int64, error) {
	if err := validName(table, key); err != nil {
		return 0, err
	}
	var next int64
	err := b.db.Update(func(tx *bolt.Tx) error {
		bk, err := tx.CreateBucketIfNotExists([]byte(table))
		if err != nil {
			return err
		}
		var cur int64
		if raw := bk.Get([]byte(key)); raw != nil {
			cur, _ = decode(raw)
		}
		if cur != expect {
			return fmt.Errorf("%w (%s/%s is at version %d, the write expected %d)", ErrConflict, table, key, cur, expect)
		}
		next = cur + 1
		return bk.Put([]byte(key), encode(next, value))
	})
	return next, err
}

// List implements Store.
func (b *Bolt) List(_ context.Context, table, prefix string) ([]Item, error) {
	if err := validName(table, "x"); err != nil {
		return nil, err
	}
	var out []Item
	err := b.db.View(func(tx *bolt.Tx) error {
		bk := tx.Bucket([]byte(table))
		if bk == nil {
			return nil
		}
		c := bk.Cursor()
		for k, raw := c.Seek([]byte(prefix)); k != nil && strings.HasPrefix(string(k), prefix); k, raw = c.Next() {
			v, data := decode(raw)
			out = append(out, Item{Key: string(k), Value: data, Version: v})
		}
		return nil
	})
	return out, err
}
