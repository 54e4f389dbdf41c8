package wire

import (
	"fmt"
	"math/big"
	"sort"

	"github.com/zeoraid/zeoraid/plugins/proto"
	"github.com/zeoraid/zeoraid/stack"
	"github.com/zeoraid/zeoraid/stack/zeoproto"
	"github.com/zeoraid/zeoraid/zconfig"
)

// ConfigErrors converts positioned configuration errors.
func ConfigErrors(errs zconfig.ErrorList) []*proto.ConfigError {
	out := make([]*proto.ConfigError, len(errs))
	for i, e := range errs {
		out[i] = &proto.ConfigError{Pos: Pos(e.Pos), Msg: e.Msg}
	}
	return out
}

// ConfigErrorsFrom converts configuration errors back; none is nil.
func ConfigErrorsFrom(errs []*proto.ConfigError) zconfig.ErrorList {
	if len(errs) == 0 {
		return nil
	}
	out := make(zconfig.ErrorList, len(errs))
	for i, e := range errs {
		out[i] = &zconfig.Error{Pos: PosFrom(e.GetPos()), Msg: e.GetMsg()}
	}
	return out
}

// Value converts a value of the ZEO wire (zeoproto's value model: nil,
// bool, integers, *big.Int, float64, string, []byte, Tuple, []any, Dict,
// and map[string]any, stack.Oid and stack.Tid as the codecs take them)
// for an extension call. Other values (class references, objects) cannot
// cross and are an error.
func Value(v any) (*proto.Value, error) {
	switch x := v.(type) {
	case nil:
		return &proto.Value{Kind: &proto.Value_None{None: true}}, nil
	case bool:
		return &proto.Value{Kind: &proto.Value_Boolean{Boolean: x}}, nil
	case int64:
		return &proto.Value{Kind: &proto.Value_Integer{Integer: x}}, nil
	case int:
		return Value(int64(x))
	case int32:
		return Value(int64(x))
	case uint32:
		return Value(int64(x))
	case uint64:
		return Value(new(big.Int).SetUint64(x))
	case *big.Int:
		if x.IsInt64() {
			return Value(x.Int64())
		}
		return &proto.Value{Kind: &proto.Value_BigInteger{BigInteger: x.String()}}, nil
	case float64:
		return &proto.Value{Kind: &proto.Value_Real{Real: x}}, nil
	case string:
		return &proto.Value{Kind: &proto.Value_Text{Text: x}}, nil
	case []byte:
		return &proto.Value{Kind: &proto.Value_Data{Data: x}}, nil
	case stack.Oid:
		return Value(x.Bytes())
	case stack.Tid:
		return Value(x.Bytes())
	case zeoproto.Tuple:
		items, err := Values(x)
		return &proto.Value{Kind: &proto.Value_Tuple{Tuple: &proto.Values{Items: items}}}, err
	case []any:
		items, err := Values(x)
		return &proto.Value{Kind: &proto.Value_List{List: &proto.Values{Items: items}}}, err
	case zeoproto.Dict:
		d := &proto.Dict{Items: make([]*proto.DictItem, 0, len(x))}
		for _, it := range x {
			k, err := Value(it.Key)
			if err != nil {
				return nil, err
			}
			val, err := Value(it.Value)
			if err != nil {
				return nil, err
			}
			d.Items = append(d.Items, &proto.DictItem{Key: k, Value: val})
		}
		return &proto.Value{Kind: &proto.Value_Dict{Dict: d}}, nil
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		d := make(zeoproto.Dict, 0, len(x))
		for _, k := range keys {
			d = append(d, zeoproto.DictItem{Key: k, Value: x[k]})
		}
		return Value(d)
	}
	return nil, fmt.Errorf("a value of type %T cannot cross to or from a plugin", v)
}

// Values converts a sequence of values.
func Values(vs []any) ([]*proto.Value, error) {
	out := make([]*proto.Value, len(vs))
	for i, v := range vs {
		pv, err := Value(v)
		if err != nil {
			return nil, err
		}
		out[i] = pv
	}
	return out, nil
}

// ValueFrom converts a value back into zeoproto's value model.
func ValueFrom(v *proto.Value) (any, error) {
	switch x := v.GetKind().(type) {
	case nil, *proto.Value_None:
		return nil, nil
	case *proto.Value_Boolean:
		return x.Boolean, nil
	case *proto.Value_Integer:
		return x.Integer, nil
	case *proto.Value_BigInteger:
		n, ok := new(big.Int).SetString(x.BigInteger, 10)
		if !ok {
			return nil, fmt.Errorf("malformed big integer %q", x.BigInteger)
		}
		return n, nil
	case *proto.Value_Real:
		return x.Real, nil
	case *proto.Value_Text:
		return x.Text, nil
	case *proto.Value_Data:
		if x.Data == nil {
			return []byte{}, nil
		}
		return x.Data, nil
	case *proto.Value_Tuple:
		items, err := ValuesFrom(x.Tuple.GetItems())
		return zeoproto.Tuple(items), err
	case *proto.Value_List:
		items, err := ValuesFrom(x.List.GetItems())
		if items == nil && err == nil {
			items = []any{}
		}
		return items, err
	case *proto.Value_Dict:
		d := make(zeoproto.Dict, 0, len(x.Dict.GetItems()))
		for _, it := range x.Dict.GetItems() {
			k, err := ValueFrom(it.GetKey())
			if err != nil {
				return nil, err
			}
			val, err := ValueFrom(it.GetValue())
			if err != nil {
				return nil, err
			}
			d = append(d, zeoproto.DictItem{Key: k, Value: val})
		}
		return d, nil
	}
	return nil, fmt.Errorf("a value of a kind this zeoraid does not know: %v", v)
}

// ValuesFrom converts a sequence back.
func ValuesFrom(vs []*proto.Value) ([]any, error) {
	out := make([]any, len(vs))
	for i, v := range vs {
		x, err := ValueFrom(v)
		if err != nil {
			return nil, err
		}
		out[i] = x
	}
	return out, nil
}
