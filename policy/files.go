package policy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"sort"
	"strings"
	"time"
	"unicode/utf8"
)

// Files is a policy bundle held in memory: slash-separated relative file name
// to file content. Every name MUST be a *.rego file or a data.json file (see
// Validate); content MUST be UTF-8. Files is what the gateway stores for a
// policy version (Encode, DecodeFiles) and hands to Check and Replace (FS).
type Files map[string]string

// Validate reports the first problem with the bundle's names and contents, in
// name order: a name that is absolute, contains "..", is not a clean relative
// path, is neither a .rego file nor data.json, or is also used as a directory;
// or content that is not valid UTF-8 (JSON could not store it unchanged).
func (f Files) Validate() error {
	names := f.names()
	for _, name := range names {
		if err := validName(name); err != nil {
			return err
		}
		if !utf8.ValidString(f[name]) {
			return fmt.Errorf("policy bundle file %q: content is not valid UTF-8", name)
		}
	}
	for _, name := range names {
		for dir := path.Dir(name); dir != "."; dir = path.Dir(dir) {
			if _, ok := f[dir]; ok {
				return fmt.Errorf("policy bundle file %q: %q is both a file and a directory", name, dir)
			}
		}
	}
	return nil
}

func validName(name string) error {
	switch {
	case name == "":
		return errors.New("policy bundle file name is empty")
	case strings.HasPrefix(name, "/"):
		return fmt.Errorf("policy bundle file %q: name is absolute", name)
	case strings.Contains(name, ".."):
		return fmt.Errorf("policy bundle file %q: name contains \"..\"", name)
	case !fs.ValidPath(name) || strings.Contains(name, `\`):
		return fmt.Errorf("policy bundle file %q: name is not a clean slash-separated relative path", name)
	case !strings.HasSuffix(name, ".rego") && path.Base(name) != "data.json":
		return fmt.Errorf("policy bundle file %q: neither a .rego file nor data.json", name)
	}
	return nil
}

func (f Files) names() []string {
	names := make([]string, 0, len(f))
	for name := range f {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

// ReadFiles reads every regular file of fsys into Files and validates the
// result; a file that is not a .rego file or data.json is an error.
func ReadFiles(fsys fs.FS) (Files, error) {
	if fsys == nil {
		return nil, errors.New("read policy bundle: nil file system")
	}
	f := Files{}
	err := fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		b, err := fs.ReadFile(fsys, p)
		if err != nil {
			return err
		}
		f[p] = string(b)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read policy bundle: %w", err)
	}
	if err := f.Validate(); err != nil {
		return nil, fmt.Errorf("read policy bundle: %w", err)
	}
	return f, nil
}

// Encode returns the bundle as one JSON object, name to content, with names in
// sorted order: the same Files always encode to the same bytes. It fails when
// Validate does.
func (f Files) Encode() ([]byte, error) {
	if err := f.Validate(); err != nil {
		return nil, fmt.Errorf("encode policy bundle: %w", err)
	}
	if f == nil {
		return []byte("{}"), nil
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // Rego source keeps its "<" and "&" readable in the database
	if err := enc.Encode(map[string]string(f)); err != nil {
		return nil, fmt.Errorf("encode policy bundle: %w", err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// DecodeFiles reads what Encode wrote: one JSON object of string values, with
// no duplicate names and nothing after it, whose names and contents pass Validate.
func DecodeFiles(b []byte) (Files, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, errors.New("decode policy bundle: not a JSON object")
	}
	f := Files{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("decode policy bundle: %w", err)
		}
		name, _ := tok.(string) // object keys are always strings
		var content string
		if err := dec.Decode(&content); err != nil {
			return nil, fmt.Errorf("decode policy bundle: file %q: %w", name, err)
		}
		if _, dup := f[name]; dup {
			return nil, fmt.Errorf("decode policy bundle: file %q appears twice", name)
		}
		f[name] = content
	}
	if _, err := dec.Token(); err != nil {
		return nil, fmt.Errorf("decode policy bundle: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("decode policy bundle: data after the JSON object")
	}
	if err := f.Validate(); err != nil {
		return nil, fmt.Errorf("decode policy bundle: %w", err)
	}
	return f, nil
}

// FS returns a read-only file system view of the bundle, taken now: later
// changes to f do not show. If f does not pass Validate, every Open fails with
// the validation error, so Check and Replace refuse the bundle.
func (f Files) FS() fs.FS {
	m := &filesFS{files: make(map[string]string, len(f)), dirs: map[string][]string{".": nil}}
	if m.err = f.Validate(); m.err != nil {
		return m
	}
	for _, name := range f.names() {
		m.files[name] = f[name]
		// Register name in its directory, and each new directory in its parent.
		for child := name; child != "."; {
			dir := path.Dir(child)
			_, known := m.dirs[dir]
			m.dirs[dir] = append(m.dirs[dir], path.Base(child))
			if known {
				break
			}
			child = dir
		}
	}
	for _, entries := range m.dirs {
		sort.Strings(entries)
	}
	return m
}

// filesFS is the fs.FS of a valid Files: files by name, and each directory's
// sorted entry names.
type filesFS struct {
	files map[string]string
	dirs  map[string][]string
	err   error
}

func (m *filesFS) Open(name string) (fs.File, error) {
	if !fs.ValidPath(name) {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrInvalid}
	}
	if m.err != nil {
		return nil, &fs.PathError{Op: "open", Path: name, Err: m.err}
	}
	if content, ok := m.files[name]; ok {
		return &memFile{info: m.info(name), r: strings.NewReader(content)}, nil
	}
	if _, ok := m.dirs[name]; ok {
		return &memDir{info: m.info(name), fsys: m, name: name}, nil
	}
	return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
}

func (m *filesFS) info(name string) memInfo {
	if content, ok := m.files[name]; ok {
		return memInfo{name: path.Base(name), size: int64(len(content)), mode: 0o444}
	}
	return memInfo{name: path.Base(name), mode: fs.ModeDir | 0o555}
}

type memInfo struct {
	name string
	size int64
	mode fs.FileMode
}

func (i memInfo) Name() string               { return i.name }
func (i memInfo) Size() int64                { return i.size }
func (i memInfo) Mode() fs.FileMode          { return i.mode }
func (i memInfo) ModTime() time.Time         { return time.Time{} }
func (i memInfo) IsDir() bool                { return i.mode.IsDir() }
func (i memInfo) Sys() any                   { return nil }
func (i memInfo) Type() fs.FileMode          { return i.mode.Type() }
func (i memInfo) Info() (fs.FileInfo, error) { return i, nil }
func (i memInfo) String() string             { return fs.FormatDirEntry(i) }

type memFile struct {
	info memInfo
	r    *strings.Reader
}

func (f *memFile) Stat() (fs.FileInfo, error) { return f.info, nil }
func (f *memFile) Read(b []byte) (int, error) { return f.r.Read(b) }
func (f *memFile) Close() error               { return nil }

// Seek and ReadAt let callers that look for io.Seeker or io.ReaderAt use them.
func (f *memFile) Seek(offset int64, whence int) (int64, error) { return f.r.Seek(offset, whence) }
func (f *memFile) ReadAt(b []byte, off int64) (int, error)      { return f.r.ReadAt(b, off) }

type memDir struct {
	info memInfo
	fsys *filesFS
	name string
	off  int
}

func (d *memDir) Stat() (fs.FileInfo, error) { return d.info, nil }
func (d *memDir) Close() error               { return nil }
func (d *memDir) Read([]byte) (int, error) {
	return 0, &fs.PathError{Op: "read", Path: d.name, Err: errors.New("is a directory")}
}

// ReadDir implements fs.ReadDirFile: entries in name order, n at a time.
func (d *memDir) ReadDir(n int) ([]fs.DirEntry, error) {
	names := d.fsys.dirs[d.name][d.off:]
	if n > 0 && len(names) == 0 {
		return nil, io.EOF
	}
	if n > 0 && n < len(names) {
		names = names[:n]
	}
	out := make([]fs.DirEntry, len(names))
	for i, base := range names {
		out[i] = d.fsys.info(path.Join(d.name, base))
	}
	d.off += len(names)
	return out, nil
}
