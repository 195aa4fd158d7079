// Code generated via abigen V2 - DO NOT EDIT.
// This file is a generated binding and any manual changes will be lost.

package contract

import (
	"bytes"
	"errors"
	"math/big"

	"github.com/ethereum/go-ethereum/accounts/abi"
	"github.com/ethereum/go-ethereum/accounts/abi/bind/v2"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core/types"
)

// Reference imports to suppress errors if they are not otherwise used.
var (
	_ = bytes.Equal
	_ = errors.New
	_ = big.NewInt
	_ = common.Big1
	_ = types.BloomLookup
	_ = abi.ConvertType
)

// AnchorRegistryMetaData contains all meta data concerning the AnchorRegistry contract.
var AnchorRegistryMetaData = bind.MetaData{
	ABI: "[{\"inputs\":[],\"stateMutability\":\"nonpayable\",\"type\":\"constructor\"},{\"inputs\":[{\"internalType\":\"address\",\"name\":\"caller\",\"type\":\"address\"}],\"name\":\"NotAnchorer\",\"type\":\"error\"},{\"inputs\":[{\"internalType\":\"address\",\"name\":\"caller\",\"type\":\"address\"}],\"name\":\"NotOwner\",\"type\":\"error\"},{\"inputs\":[{\"internalType\":\"bytes32\",\"name\":\"expected\",\"type\":\"bytes32\"},{\"internalType\":\"bytes32\",\"name\":\"got\",\"type\":\"bytes32\"}],\"name\":\"PrevRootMismatch\",\"type\":\"error\"},{\"inputs\":[{\"internalType\":\"uint64\",\"name\":\"expected\",\"type\":\"uint64\"},{\"internalType\":\"uint64\",\"name\":\"got\",\"type\":\"uint64\"}],\"name\":\"SeqMismatch\",\"type\":\"error\"},{\"inputs\":[{\"internalType\":\"uint64\",\"name\":\"last\",\"type\":\"uint64\"},{\"internalType\":\"uint64\",\"name\":\"got\",\"type\":\"uint64\"}],\"name\":\"TreeSizeNotIncreasing\",\"type\":\"error\"},{\"inputs\":[],\"name\":\"ZeroAddress\",\"type\":\"error\"},{\"inputs\":[],\"name\":\"ZeroRoot\",\"type\":\"error\"},{\"anonymous\":false,\"inputs\":[{\"indexed\":true,\"internalType\":\"uint64\",\"name\":\"seq\",\"type\":\"uint64\"},{\"indexed\":false,\"internalType\":\"bytes32\",\"name\":\"root\",\"type\":\"bytes32\"},{\"indexed\":false,\"internalType\":\"uint64\",\"name\":\"treeSize\",\"type\":\"uint64\"},{\"indexed\":false,\"internalType\":\"bytes32\",\"name\":\"prevRoot\",\"type\":\"bytes32\"},{\"indexed\":false,\"internalType\":\"uint64\",\"name\":\"timestamp\",\"type\":\"uint64\"}],\"name\":\"Anchored\",\"type\":\"event\"},{\"anonymous\":false,\"inputs\":[{\"indexed\":true,\"internalType\":\"address\",\"name\":\"account\",\"type\":\"address\"}],\"name\":\"AnchorerAdded\",\"type\":\"event\"},{\"anonymous\":false,\"inputs\":[{\"indexed\":true,\"internalType\":\"address\",\"name\":\"account\",\"type\":\"address\"}],\"name\":\"AnchorerRemoved\",\"type\":\"event\"},{\"inputs\":[{\"internalType\":\"address\",\"name\":\"account\",\"type\":\"address\"}],\"name\":\"addAnchorer\",\"outputs\":[],\"stateMutability\":\"nonpayable\",\"type\":\"function\"},{\"inputs\":[{\"internalType\":\"uint64\",\"name\":\"seq\",\"type\":\"uint64\"},{\"internalType\":\"bytes32\",\"name\":\"root\",\"type\":\"bytes32\"},{\"internalType\":\"uint64\",\"name\":\"treeSize\",\"type\":\"uint64\"},{\"internalType\":\"bytes32\",\"name\":\"prevRoot\",\"type\":\"bytes32\"}],\"name\":\"anchor\",\"outputs\":[],\"stateMutability\":\"nonpayable\",\"type\":\"function\"},{\"inputs\":[{\"internalType\":\"uint64\",\"name\":\"seq\",\"type\":\"uint64\"}],\"name\":\"anchorAt\",\"outputs\":[{\"internalType\":\"bytes32\",\"name\":\"root\",\"type\":\"bytes32\"},{\"internalType\":\"bytes32\",\"name\":\"prevRoot\",\"type\":\"bytes32\"}],\"stateMutability\":\"view\",\"type\":\"function\"},{\"inputs\":[{\"internalType\":\"address\",\"name\":\"account\",\"type\":\"address\"}],\"name\":\"isAnchorer\",\"outputs\":[{\"internalType\":\"bool\",\"name\":\"\",\"type\":\"bool\"}],\"stateMutability\":\"view\",\"type\":\"function\"},{\"inputs\":[],\"name\":\"latest\",\"outputs\":[{\"internalType\":\"uint64\",\"name\":\"seq\",\"type\":\"uint64\"},{\"internalType\":\"bytes32\",\"name\":\"root\",\"type\":\"bytes32\"},{\"internalType\":\"uint64\",\"name\":\"treeSize\",\"type\":\"uint64\"},{\"internalType\":\"uint64\",\"name\":\"timestamp\",\"type\":\"uint64\"}],\"stateMutability\":\"view\",\"type\":\"function\"},{\"inputs\":[],\"name\":\"owner\",\"outputs\":[{\"internalType\":\"address\",\"name\":\"\",\"type\":\"address\"}],\"stateMutability\":\"view\",\"type\":\"function\"},{\"inputs\":[{\"internalType\":\"address\",\"name\":\"account\",\"type\":\"address\"}],\"name\":\"removeAnchorer\",\"outputs\":[],\"stateMutability\":\"nonpayable\",\"type\":\"function\"}]",
	ID:  "AnchorRegistry",
	Bin: "0x60a060405234801561000f575f5ffd5b503360808190526040517f973a352b72d6aa1bf3d72cdbb52f156827d59849c609d8798b3ba1b0086bd230905f90a260018054600160801b600160c01b031916600160801b426001600160401b0316021790556080516107a56100965f395f818161013a015281816101dd015281816102750152818161032a015261039001526107a55ff3fe608060405234801561000f575f5ffd5b506004361061007a575f3560e01c80638da5cb5b116100585780638da5cb5b146101355780638eaaf6e314610174578063e096ba9114610197578063e4942e5e146101aa575f5ffd5b8063099dd5c71461007e57806327b807de1461009357806352bfe789146100a6575b5f5ffd5b61009161008c36600461067b565b6101d2565b005b6100916100a136600461067b565b61026a565b6100fd604080516060810182526001546001600160401b03808216808452600160401b830482166020808601918252600160801b9094049092169385019384525f8181526002909352939091205490519151909293565b604080516001600160401b03958616815260208101949094529184169183019190915290911660608201526080015b60405180910390f35b61015c7f000000000000000000000000000000000000000000000000000000000000000081565b6040516001600160a01b03909116815260200161012c565b61018761018236600461067b565b610327565b604051901515815260200161012c565b6100916101a53660046106c3565b610385565b6101bd6101b8366004610704565b6105f7565b6040805192835260208301919091520161012c565b336001600160a01b037f000000000000000000000000000000000000000000000000000000000000000016146102225760405163245aecd360e01b81523360048201526024015b60405180910390fd5b6001600160a01b0381165f81815260208190526040808220805460ff19169055517fb57a07cc0c7b6f5d10073b1c21ed569ea8815f372e87f41d48cfc58bff0c0b089190a250565b336001600160a01b037f000000000000000000000000000000000000000000000000000000000000000016146102b55760405163245aecd360e01b8152336004820152602401610219565b6001600160a01b0381166102dc5760405163d92e233d60e01b815260040160405180910390fd5b6001600160a01b0381165f81815260208190526040808220805460ff19166001179055517f973a352b72d6aa1bf3d72cdbb52f156827d59849c609d8798b3ba1b0086bd2309190a250565b5f7f00000000000000000000000000000000000000000000000000000000000000006001600160a01b0316826001600160a01b0316148061037f57506001600160a01b0382165f9081526020819052604090205460ff165b92915050565b336001600160a01b037f000000000000000000000000000000000000000000000000000000000000000016148015906103cd5750335f9081526020819052604090205460ff16155b156103ed57604051630e5e5f6f60e01b8152336004820152602401610219565b60408051606081018252600180546001600160401b03808216808552600160401b830482166020860152600160801b9092041693830193909352909161043291610731565b6001600160401b0316856001600160401b031614610484578051610457906001610731565b604051630874cb7960e31b81526001600160401b0391821660048201529086166024820152604401610219565b80516001600160401b03165f908152600260205260409020548281146104c757604051632a533a6d60e21b81526004810182905260248101849052604401610219565b81602001516001600160401b0316846001600160401b0316116105165760208201516040516352d232b160e01b81526001600160401b0391821660048201529085166024820152604401610219565b846105345760405163b263ae7360e01b815260040160405180910390fd5b6001600160401b038681165f8181526002602090815260409182902089905581516060808201845284825289861682840181905242968716928501839052600180546fffffffffffffffffffffffffffffffff19168717600160401b83021767ffffffffffffffff60801b1916600160801b850217905584518c815293840152928201889052918101919091527fa6efc9d0e526f080693f9dc06da5de82a09f3b86424e605577bc1d0ac8055f1a9060800160405180910390a250505050505050565b5f806001600160401b038316158061061d57506001546001600160401b03908116908416115b1561062c57505f928392509050565b6001600160401b0383165f90815260026020819052604082205491610652600187610750565b6001600160401b03166001600160401b031681526020019081526020015f205491509150915091565b5f6020828403121561068b575f5ffd5b81356001600160a01b03811681146106a1575f5ffd5b9392505050565b80356001600160401b03811681146106be575f5ffd5b919050565b5f5f5f5f608085870312156106d6575f5ffd5b6106df856106a8565b9350602085013592506106f4604086016106a8565b9396929550929360600135925050565b5f60208284031215610714575f5ffd5b6106a1826106a8565b634e487b7160e01b5f52601160045260245ffd5b6001600160401b03818116838216019081111561037f5761037f61071d565b6001600160401b03828116828216039081111561037f5761037f61071d56fea26469706673582212206ec0d2815039f86fba551ce45526b55e35b0a0b1622bab87dc8d39f873605fa764736f6c63430008250033",
}

// AnchorRegistry is an auto generated Go binding around an Ethereum contract.
type AnchorRegistry struct {
	abi abi.ABI
}

// GetABI returns the ABI associated with this contract binding.
func (c *AnchorRegistry) GetABI() abi.ABI {
	return c.abi
}

// NewAnchorRegistry creates a new instance of AnchorRegistry.
func NewAnchorRegistry() *AnchorRegistry {
	parsed, err := AnchorRegistryMetaData.ParseABI()
	if err != nil {
		panic(errors.New("invalid ABI: " + err.Error()))
	}
	return &AnchorRegistry{abi: *parsed}
}

// Instance creates a wrapper for a deployed contract instance at the given address.
// Use this to create the instance object passed to abigen v2 library functions Call, Transact, etc.
func (c *AnchorRegistry) Instance(backend bind.ContractBackend, addr common.Address) *bind.BoundContract {
	return bind.NewBoundContract(addr, c.abi, backend, backend, backend)
}

// PackAddAnchorer is the Go binding used to pack the parameters required for calling
// the contract method with ID 0x27b807de.  This method will panic if any
// invalid/nil inputs are passed.
//
// Solidity: function addAnchorer(address account) returns()
func (anchorRegistry *AnchorRegistry) PackAddAnchorer(account common.Address) []byte {
	enc, err := anchorRegistry.abi.Pack("addAnchorer", account)
	if err != nil {
		panic(err)
	}
	return enc
}

// TryPackAddAnchorer is the Go binding used to pack the parameters required for calling
// the contract method with ID 0x27b807de.  This method will return an error
// if any inputs are invalid/nil.
//
// Solidity: function addAnchorer(address account) returns()
func (anchorRegistry *AnchorRegistry) TryPackAddAnchorer(account common.Address) ([]byte, error) {
	return anchorRegistry.abi.Pack("addAnchorer", account)
}

// PackAnchor is the Go binding used to pack the parameters required for calling
// the contract method with ID 0xe096ba91.  This method will panic if any
// invalid/nil inputs are passed.
//
// Solidity: function anchor(uint64 seq, bytes32 root, uint64 treeSize, bytes32 prevRoot) returns()
func (anchorRegistry *AnchorRegistry) PackAnchor(seq uint64, root [32]byte, treeSize uint64, prevRoot [32]byte) []byte {
	enc, err := anchorRegistry.abi.Pack("anchor", seq, root, treeSize, prevRoot)
	if err != nil {
		panic(err)
	}
	return enc
}

// TryPackAnchor is the Go binding used to pack the parameters required for calling
// the contract method with ID 0xe096ba91.  This method will return an error
// if any inputs are invalid/nil.
//
// Solidity: function anchor(uint64 seq, bytes32 root, uint64 treeSize, bytes32 prevRoot) returns()
func (anchorRegistry *AnchorRegistry) TryPackAnchor(seq uint64, root [32]byte, treeSize uint64, prevRoot [32]byte) ([]byte, error) {
	return anchorRegistry.abi.Pack("anchor", seq, root, treeSize, prevRoot)
}

// PackAnchorAt is the Go binding used to pack the parameters required for calling
// the contract method with ID 0xe4942e5e.  This method will panic if any
// invalid/nil inputs are passed.
//
// Solidity: function anchorAt(uint64 seq) view returns(bytes32 root, bytes32 prevRoot)
func (anchorRegistry *AnchorRegistry) PackAnchorAt(seq uint64) []byte {
	enc, err := anchorRegistry.abi.Pack("anchorAt", seq)
	if err != nil {
		panic(err)
	}
	return enc
}

// TryPackAnchorAt is the Go binding used to pack the parameters required for calling
// the contract method with ID 0xe4942e5e.  This method will return an error
// if any inputs are invalid/nil.
//
// Solidity: function anchorAt(uint64 seq) view returns(bytes32 root, bytes32 prevRoot)
func (anchorRegistry *AnchorRegistry) TryPackAnchorAt(seq uint64) ([]byte, error) {
	return anchorRegistry.abi.Pack("anchorAt", seq)
}

// AnchorAtOutput serves as a container for the return parameters of contract
// method AnchorAt.
type AnchorAtOutput struct {
	Root     [32]byte
	PrevRoot [32]byte
}

// UnpackAnchorAt is the Go binding that unpacks the parameters returned
// from invoking the contract method with ID 0xe4942e5e.
//
// Solidity: function anchorAt(uint64 seq) view returns(bytes32 root, bytes32 prevRoot)
func (anchorRegistry *AnchorRegistry) UnpackAnchorAt(data []byte) (AnchorAtOutput, error) {
	out, err := anchorRegistry.abi.Unpack("anchorAt", data)
	outstruct := new(AnchorAtOutput)
	if err != nil {
		return *outstruct, err
	}
	outstruct.Root = *abi.ConvertType(out[0], new([32]byte)).(*[32]byte)
	outstruct.PrevRoot = *abi.ConvertType(out[1], new([32]byte)).(*[32]byte)
	return *outstruct, nil
}

// PackIsAnchorer is the Go binding used to pack the parameters required for calling
// the contract method with ID 0x8eaaf6e3.  This method will panic if any
// invalid/nil inputs are passed.
//
// Solidity: function isAnchorer(address account) view returns(bool)
func (anchorRegistry *AnchorRegistry) PackIsAnchorer(account common.Address) []byte {
	enc, err := anchorRegistry.abi.Pack("isAnchorer", account)
	if err != nil {
		panic(err)
	}
	return enc
}

// TryPackIsAnchorer is the Go binding used to pack the parameters required for calling
// the contract method with ID 0x8eaaf6e3.  This method will return an error
// if any inputs are invalid/nil.
//
// Solidity: function isAnchorer(address account) view returns(bool)
func (anchorRegistry *AnchorRegistry) TryPackIsAnchorer(account common.Address) ([]byte, error) {
	return anchorRegistry.abi.Pack("isAnchorer", account)
}

// UnpackIsAnchorer is the Go binding that unpacks the parameters returned
// from invoking the contract method with ID 0x8eaaf6e3.
//
// Solidity: function isAnchorer(address account) view returns(bool)
func (anchorRegistry *AnchorRegistry) UnpackIsAnchorer(data []byte) (bool, error) {
	out, err := anchorRegistry.abi.Unpack("isAnchorer", data)
	if err != nil {
		return *new(bool), err
	}
	out0 := *abi.ConvertType(out[0], new(bool)).(*bool)
	return out0, nil
}

// PackLatest is the Go binding used to pack the parameters required for calling
// the contract method with ID 0x52bfe789.  This method will panic if any
// invalid/nil inputs are passed.
//
// Solidity: function latest() view returns(uint64 seq, bytes32 root, uint64 treeSize, uint64 timestamp)
func (anchorRegistry *AnchorRegistry) PackLatest() []byte {
	enc, err := anchorRegistry.abi.Pack("latest")
	if err != nil {
		panic(err)
	}
	return enc
}

// TryPackLatest is the Go binding used to pack the parameters required for calling
// the contract method with ID 0x52bfe789.  This method will return an error
// if any inputs are invalid/nil.
//
// Solidity: function latest() view returns(uint64 seq, bytes32 root, uint64 treeSize, uint64 timestamp)
func (anchorRegistry *AnchorRegistry) TryPackLatest() ([]byte, error) {
	return anchorRegistry.abi.Pack("latest")
}

// LatestOutput serves as a container for the return parameters of contract
// method Latest.
type LatestOutput struct {
	Seq       uint64
	Root      [32]byte
	TreeSize  uint64
	Timestamp uint64
}

// UnpackLatest is the Go binding that unpacks the parameters returned
// from invoking the contract method with ID 0x52bfe789.
//
// Solidity: function latest() view returns(uint64 seq, bytes32 root, uint64 treeSize, uint64 timestamp)
func (anchorRegistry *AnchorRegistry) UnpackLatest(data []byte) (LatestOutput, error) {
	out, err := anchorRegistry.abi.Unpack("latest", data)
	outstruct := new(LatestOutput)
	if err != nil {
		return *outstruct, err
	}
	outstruct.Seq = *abi.ConvertType(out[0], new(uint64)).(*uint64)
	outstruct.Root = *abi.ConvertType(out[1], new([32]byte)).(*[32]byte)
	outstruct.TreeSize = *abi.ConvertType(out[2], new(uint64)).(*uint64)
	outstruct.Timestamp = *abi.ConvertType(out[3], new(uint64)).(*uint64)
	return *outstruct, nil
}

// PackOwner is the Go binding used to pack the parameters required for calling
// the contract method with ID 0x8da5cb5b.  This method will panic if any
// invalid/nil inputs are passed.
//
// Solidity: function owner() view returns(address)
func (anchorRegistry *AnchorRegistry) PackOwner() []byte {
	enc, err := anchorRegistry.abi.Pack("owner")
	if err != nil {
		panic(err)
	}
	return enc
}

// TryPackOwner is the Go binding used to pack the parameters required for calling
// the contract method with ID 0x8da5cb5b.  This method will return an error
// if any inputs are invalid/nil.
//
// Solidity: function owner() view returns(address)
func (anchorRegistry *AnchorRegistry) TryPackOwner() ([]byte, error) {
	return anchorRegistry.abi.Pack("owner")
}

// UnpackOwner is the Go binding that unpacks the parameters returned
// from invoking the contract method with ID 0x8da5cb5b.
//
// Solidity: function owner() view returns(address)
func (anchorRegistry *AnchorRegistry) UnpackOwner(data []byte) (common.Address, error) {
	out, err := anchorRegistry.abi.Unpack("owner", data)
	if err != nil {
		return *new(common.Address), err
	}
	out0 := *abi.ConvertType(out[0], new(common.Address)).(*common.Address)
	return out0, nil
}

// PackRemoveAnchorer is the Go binding used to pack the parameters required for calling
// the contract method with ID 0x099dd5c7.  This method will panic if any
// invalid/nil inputs are passed.
//
// Solidity: function removeAnchorer(address account) returns()
func (anchorRegistry *AnchorRegistry) PackRemoveAnchorer(account common.Address) []byte {
	enc, err := anchorRegistry.abi.Pack("removeAnchorer", account)
	if err != nil {
		panic(err)
	}
	return enc
}

// TryPackRemoveAnchorer is the Go binding used to pack the parameters required for calling
// the contract method with ID 0x099dd5c7.  This method will return an error
// if any inputs are invalid/nil.
//
// Solidity: function removeAnchorer(address account) returns()
func (anchorRegistry *AnchorRegistry) TryPackRemoveAnchorer(account common.Address) ([]byte, error) {
	return anchorRegistry.abi.Pack("removeAnchorer", account)
}

// AnchorRegistryAnchored represents a Anchored event raised by the AnchorRegistry contract.
type AnchorRegistryAnchored struct {
	Seq       uint64
	Root      [32]byte
	TreeSize  uint64
	PrevRoot  [32]byte
	Timestamp uint64
	Raw       *types.Log // Blockchain specific contextual infos
}

const AnchorRegistryAnchoredEventName = "Anchored"

// ContractEventName returns the user-defined event name.
func (AnchorRegistryAnchored) ContractEventName() string {
	return AnchorRegistryAnchoredEventName
}

// UnpackAnchoredEvent is the Go binding that unpacks the event data emitted
// by contract.
//
// Solidity: event Anchored(uint64 indexed seq, bytes32 root, uint64 treeSize, bytes32 prevRoot, uint64 timestamp)
func (anchorRegistry *AnchorRegistry) UnpackAnchoredEvent(log *types.Log) (*AnchorRegistryAnchored, error) {
	event := "Anchored"
	if len(log.Topics) == 0 {
		return nil, bind.ErrNoEventSignature
	}
	if log.Topics[0] != anchorRegistry.abi.Events[event].ID {
		return nil, bind.ErrEventSignatureMismatch
	}
	out := new(AnchorRegistryAnchored)
	if len(log.Data) > 0 {
		if err := anchorRegistry.abi.UnpackIntoInterface(out, event, log.Data); err != nil {
			return nil, err
		}
	}
	var indexed abi.Arguments
	for _, arg := range anchorRegistry.abi.Events[event].Inputs {
		if arg.Indexed {
			indexed = append(indexed, arg)
		}
	}
	if err := abi.ParseTopics(out, indexed, log.Topics[1:]); err != nil {
		return nil, err
	}
	out.Raw = log
	return out, nil
}

// AnchorRegistryAnchorerAdded represents a AnchorerAdded event raised by the AnchorRegistry contract.
type AnchorRegistryAnchorerAdded struct {
	Account common.Address
	Raw     *types.Log // Blockchain specific contextual infos
}

const AnchorRegistryAnchorerAddedEventName = "AnchorerAdded"

// ContractEventName returns the user-defined event name.
func (AnchorRegistryAnchorerAdded) ContractEventName() string {
	return AnchorRegistryAnchorerAddedEventName
}

// UnpackAnchorerAddedEvent is the Go binding that unpacks the event data emitted
// by contract.
//
// Solidity: event AnchorerAdded(address indexed account)
func (anchorRegistry *AnchorRegistry) UnpackAnchorerAddedEvent(log *types.Log) (*AnchorRegistryAnchorerAdded, error) {
	event := "AnchorerAdded"
	if len(log.Topics) == 0 {
		return nil, bind.ErrNoEventSignature
	}
	if log.Topics[0] != anchorRegistry.abi.Events[event].ID {
		return nil, bind.ErrEventSignatureMismatch
	}
	out := new(AnchorRegistryAnchorerAdded)
	if len(log.Data) > 0 {
		if err := anchorRegistry.abi.UnpackIntoInterface(out, event, log.Data); err != nil {
			return nil, err
		}
	}
	var indexed abi.Arguments
	for _, arg := range anchorRegistry.abi.Events[event].Inputs {
		if arg.Indexed {
			indexed = append(indexed, arg)
		}
	}
	if err := abi.ParseTopics(out, indexed, log.Topics[1:]); err != nil {
		return nil, err
	}
	out.Raw = log
	return out, nil
}

// AnchorRegistryAnchorerRemoved represents a AnchorerRemoved event raised by the AnchorRegistry contract.
type AnchorRegistryAnchorerRemoved struct {
	Account common.Address
	Raw     *types.Log // Blockchain specific contextual infos
}

const AnchorRegistryAnchorerRemovedEventName = "AnchorerRemoved"

// ContractEventName returns the user-defined event name.
func (AnchorRegistryAnchorerRemoved) ContractEventName() string {
	return AnchorRegistryAnchorerRemovedEventName
}

// UnpackAnchorerRemovedEvent is the Go binding that unpacks the event data emitted
// by contract.
//
// Solidity: event AnchorerRemoved(address indexed account)
func (anchorRegistry *AnchorRegistry) UnpackAnchorerRemovedEvent(log *types.Log) (*AnchorRegistryAnchorerRemoved, error) {
	event := "AnchorerRemoved"
	if len(log.Topics) == 0 {
		return nil, bind.ErrNoEventSignature
	}
	if log.Topics[0] != anchorRegistry.abi.Events[event].ID {
		return nil, bind.ErrEventSignatureMismatch
	}
	out := new(AnchorRegistryAnchorerRemoved)
	if len(log.Data) > 0 {
		if err := anchorRegistry.abi.UnpackIntoInterface(out, event, log.Data); err != nil {
			return nil, err
		}
	}
	var indexed abi.Arguments
	for _, arg := range anchorRegistry.abi.Events[event].Inputs {
		if arg.Indexed {
			indexed = append(indexed, arg)
		}
	}
	if err := abi.ParseTopics(out, indexed, log.Topics[1:]); err != nil {
		return nil, err
	}
	out.Raw = log
	return out, nil
}

// UnpackError attempts to decode the provided error data using user-defined
// error definitions.
func (anchorRegistry *AnchorRegistry) UnpackError(raw []byte) (any, error) {
	if bytes.Equal(raw[:4], anchorRegistry.abi.Errors["NotAnchorer"].ID.Bytes()[:4]) {
		return anchorRegistry.UnpackNotAnchorerError(raw[4:])
	}
	if bytes.Equal(raw[:4], anchorRegistry.abi.Errors["NotOwner"].ID.Bytes()[:4]) {
		return anchorRegistry.UnpackNotOwnerError(raw[4:])
	}
	if bytes.Equal(raw[:4], anchorRegistry.abi.Errors["PrevRootMismatch"].ID.Bytes()[:4]) {
		return anchorRegistry.UnpackPrevRootMismatchError(raw[4:])
	}
	if bytes.Equal(raw[:4], anchorRegistry.abi.Errors["SeqMismatch"].ID.Bytes()[:4]) {
		return anchorRegistry.UnpackSeqMismatchError(raw[4:])
	}
	if bytes.Equal(raw[:4], anchorRegistry.abi.Errors["TreeSizeNotIncreasing"].ID.Bytes()[:4]) {
		return anchorRegistry.UnpackTreeSizeNotIncreasingError(raw[4:])
	}
	if bytes.Equal(raw[:4], anchorRegistry.abi.Errors["ZeroAddress"].ID.Bytes()[:4]) {
		return anchorRegistry.UnpackZeroAddressError(raw[4:])
	}
	if bytes.Equal(raw[:4], anchorRegistry.abi.Errors["ZeroRoot"].ID.Bytes()[:4]) {
		return anchorRegistry.UnpackZeroRootError(raw[4:])
	}
	return nil, errors.New("Unknown error")
}

// AnchorRegistryNotAnchorer represents a NotAnchorer error raised by the AnchorRegistry contract.
type AnchorRegistryNotAnchorer struct {
	Caller common.Address
}

// ErrorID returns the hash of canonical representation of the error's signature.
//
// Solidity: error NotAnchorer(address caller)
func AnchorRegistryNotAnchorerErrorID() common.Hash {
	return common.HexToHash("0x0e5e5f6fb7b58e86a564686afc7a504f61673ce48074764f6af98ea30d68fcd6")
}

// UnpackNotAnchorerError is the Go binding used to decode the provided
// error data into the corresponding Go error struct.
//
// Solidity: error NotAnchorer(address caller)
func (anchorRegistry *AnchorRegistry) UnpackNotAnchorerError(raw []byte) (*AnchorRegistryNotAnchorer, error) {
	out := new(AnchorRegistryNotAnchorer)
	if err := anchorRegistry.abi.UnpackIntoInterface(out, "NotAnchorer", raw); err != nil {
		return nil, err
	}
	return out, nil
}

// AnchorRegistryNotOwner represents a NotOwner error raised by the AnchorRegistry contract.
type AnchorRegistryNotOwner struct {
	Caller common.Address
}

// ErrorID returns the hash of canonical representation of the error's signature.
//
// Solidity: error NotOwner(address caller)
func AnchorRegistryNotOwnerErrorID() common.Hash {
	return common.HexToHash("0x245aecd3fabbd17d6c3c92dc7f0ab916ea8cbf6fc1862c8b56893090ac3fff4c")
}

// UnpackNotOwnerError is the Go binding used to decode the provided
// error data into the corresponding Go error struct.
//
// Solidity: error NotOwner(address caller)
func (anchorRegistry *AnchorRegistry) UnpackNotOwnerError(raw []byte) (*AnchorRegistryNotOwner, error) {
	out := new(AnchorRegistryNotOwner)
	if err := anchorRegistry.abi.UnpackIntoInterface(out, "NotOwner", raw); err != nil {
		return nil, err
	}
	return out, nil
}

// AnchorRegistryPrevRootMismatch represents a PrevRootMismatch error raised by the AnchorRegistry contract.
type AnchorRegistryPrevRootMismatch struct {
	Expected [32]byte
	Got      [32]byte
}

// ErrorID returns the hash of canonical representation of the error's signature.
//
// Solidity: error PrevRootMismatch(bytes32 expected, bytes32 got)
func AnchorRegistryPrevRootMismatchErrorID() common.Hash {
	return common.HexToHash("0xa94ce9b461e09027ae854d9d4a5e83433624fa7a756d9dfaca7625402c737f1a")
}

// UnpackPrevRootMismatchError is the Go binding used to decode the provided
// error data into the corresponding Go error struct.
//
// Solidity: error PrevRootMismatch(bytes32 expected, bytes32 got)
func (anchorRegistry *AnchorRegistry) UnpackPrevRootMismatchError(raw []byte) (*AnchorRegistryPrevRootMismatch, error) {
	out := new(AnchorRegistryPrevRootMismatch)
	if err := anchorRegistry.abi.UnpackIntoInterface(out, "PrevRootMismatch", raw); err != nil {
		return nil, err
	}
	return out, nil
}

// AnchorRegistrySeqMismatch represents a SeqMismatch error raised by the AnchorRegistry contract.
type AnchorRegistrySeqMismatch struct {
	Expected uint64
	Got      uint64
}

// ErrorID returns the hash of canonical representation of the error's signature.
//
// Solidity: error SeqMismatch(uint64 expected, uint64 got)
func AnchorRegistrySeqMismatchErrorID() common.Hash {
	return common.HexToHash("0x43a65bc8f3590977d6e17d650ecfc9cffce483e3c15315ceaf1cc3849c9d5931")
}

// UnpackSeqMismatchError is the Go binding used to decode the provided
// error data into the corresponding Go error struct.
//
// Solidity: error SeqMismatch(uint64 expected, uint64 got)
func (anchorRegistry *AnchorRegistry) UnpackSeqMismatchError(raw []byte) (*AnchorRegistrySeqMismatch, error) {
	out := new(AnchorRegistrySeqMismatch)
	if err := anchorRegistry.abi.UnpackIntoInterface(out, "SeqMismatch", raw); err != nil {
		return nil, err
	}
	return out, nil
}

// AnchorRegistryTreeSizeNotIncreasing represents a TreeSizeNotIncreasing error raised by the AnchorRegistry contract.
type AnchorRegistryTreeSizeNotIncreasing struct {
	Last uint64
	Got  uint64
}

// ErrorID returns the hash of canonical representation of the error's signature.
//
// Solidity: error TreeSizeNotIncreasing(uint64 last, uint64 got)
func AnchorRegistryTreeSizeNotIncreasingErrorID() common.Hash {
	return common.HexToHash("0x52d232b1191c78c6e56160fffa0355f32da05a7aea153e309a6eb47ed1323acb")
}

// UnpackTreeSizeNotIncreasingError is the Go binding used to decode the provided
// error data into the corresponding Go error struct.
//
// Solidity: error TreeSizeNotIncreasing(uint64 last, uint64 got)
func (anchorRegistry *AnchorRegistry) UnpackTreeSizeNotIncreasingError(raw []byte) (*AnchorRegistryTreeSizeNotIncreasing, error) {
	out := new(AnchorRegistryTreeSizeNotIncreasing)
	if err := anchorRegistry.abi.UnpackIntoInterface(out, "TreeSizeNotIncreasing", raw); err != nil {
		return nil, err
	}
	return out, nil
}

// AnchorRegistryZeroAddress represents a ZeroAddress error raised by the AnchorRegistry contract.
type AnchorRegistryZeroAddress struct {
}

// ErrorID returns the hash of canonical representation of the error's signature.
//
// Solidity: error ZeroAddress()
func AnchorRegistryZeroAddressErrorID() common.Hash {
	return common.HexToHash("0xd92e233df2717d4a40030e20904abd27b68fcbeede117eaaccbbdac9618c8c73")
}

// UnpackZeroAddressError is the Go binding used to decode the provided
// error data into the corresponding Go error struct.
//
// Solidity: error ZeroAddress()
func (anchorRegistry *AnchorRegistry) UnpackZeroAddressError(raw []byte) (*AnchorRegistryZeroAddress, error) {
	out := new(AnchorRegistryZeroAddress)
	if err := anchorRegistry.abi.UnpackIntoInterface(out, "ZeroAddress", raw); err != nil {
		return nil, err
	}
	return out, nil
}

// AnchorRegistryZeroRoot represents a ZeroRoot error raised by the AnchorRegistry contract.
type AnchorRegistryZeroRoot struct {
}

// ErrorID returns the hash of canonical representation of the error's signature.
//
// Solidity: error ZeroRoot()
func AnchorRegistryZeroRootErrorID() common.Hash {
	return common.HexToHash("0xb263ae738e814ca9af6ee56bb85daa47624e790421913c947dcba2aac07cfdbd")
}

// UnpackZeroRootError is the Go binding used to decode the provided
// error data into the corresponding Go error struct.
//
// Solidity: error ZeroRoot()
func (anchorRegistry *AnchorRegistry) UnpackZeroRootError(raw []byte) (*AnchorRegistryZeroRoot, error) {
	out := new(AnchorRegistryZeroRoot)
	if err := anchorRegistry.abi.UnpackIntoInterface(out, "ZeroRoot", raw); err != nil {
		return nil, err
	}
	return out, nil
}
