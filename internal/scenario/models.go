package scenario

import (
	"fmt"
	"io/fs"
	"strings"

	"github.com/wanwu-iot/wanwu/examples/models"
	"github.com/wanwu-iot/wanwu/internal/thingmodel"
)

// Models returns the thing-model documents the kinds report, keyed by ref
// ("demo:cnc-spindle@1.0.0"). They are the files of examples/models,
// embedded there (go:embed cannot reach a parent directory, and one copy
// is better than two kept equal by a test). The map is new on every call.
func Models() map[string][]byte {
	out := map[string][]byte{}
	for _, k := range kinds {
		out[k.modelRef("demo")] = modelDoc(k)
	}
	return out
}

func modelDoc(k *kind) []byte {
	b, err := fs.ReadFile(models.FS, k.model+".model.json")
	if err != nil {
		panic("scenario: the model of kind " + k.name + " is not embedded: " + err.Error())
	}
	return b
}

// ModelJSON returns the document of the class's model (Class.Model): the
// kind's model with its id in the namespace the class names, in the
// canonical form the registry stores.
func (c *Class) ModelJSON() ([]byte, error) {
	k := lookupKind(c.Kind)
	if k == nil {
		return nil, fmt.Errorf("scenario: class %q: unknown kind %q", c.Name, c.Kind)
	}
	m, err := thingmodel.Parse(modelDoc(k))
	if err != nil {
		return nil, fmt.Errorf("scenario: model of kind %s: %w", k.name, err)
	}
	ref := c.Model
	if ref == "" {
		ref = k.modelRef("demo")
	}
	id, _, _ := strings.Cut(ref, "@")
	m.ID = id
	if err := m.Validate(); err != nil {
		return nil, fmt.Errorf("scenario: class %q: model %s: %w", c.Name, ref, err)
	}
	return m.JSON()
}
