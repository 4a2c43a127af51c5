// Package schema embeds the claims database's migrations.
package schema

import (
	"embed"
	"io/fs"
)

//go:embed migrations/*.sql
var files embed.FS

// Migrations returns the migration files, named NNNN_name.sql at the root.
func Migrations() fs.FS {
	sub, err := fs.Sub(files, "migrations")
	if err != nil {
		// fs.Sub only fails on an invalid path, and this one is constant.
		return files
	}
	return sub
}
