package network

import (
	"encoding/binary"
	"fmt"
	"net/netip"
)

// MaxZones is the most availability zones a layout can spread over; it
// matches the upper bound of network.azCount in the platform spec.
const MaxZones = 6

// Address plan, in bits added to the VPC prefix. The VPC is cut into eight
// equal blocks: zone i's private subnet is block i, the last block is cut
// into eight again for the public subnets and the one before it likewise
// for the isolated subnets. Private subnets hold the tasks, which scale out
// and each take an address, and so get most of the space; public subnets
// only hold load balancers and NAT gateways, isolated ones the databases
// and caches. A zone added later takes the next free block of each tier
// and never moves an existing subnet.
const (
	privateBits = 3
	publicBits  = privateBits + 3
	// smallestSubnet is the longest prefix AWS accepts for a subnet.
	smallestSubnet = 28
	// largestVPC is the shortest prefix AWS accepts for a VPC.
	largestVPC = 16
)

// Layout is the address plan of one VPC: its block and, per zone in order, a
// public, a private and an isolated subnet.
type Layout struct {
	VPC      netip.Prefix
	Public   []netip.Prefix
	Private  []netip.Prefix
	Isolated []netip.Prefix
}

// Zones is the number of availability zones the layout spans.
func (l Layout) Zones() int { return len(l.Private) }

// PlanLayout plans the subnets of a VPC with block cidr over zones
// availability zones. Its errors say what is wrong with cidr and what to use
// instead, so callers only prefix the spec field.
func PlanLayout(cidr string, zones int) (Layout, error) {
	if zones < 1 || zones > MaxZones {
		return Layout{}, fmt.Errorf("%d zones is out of range; use 1 to %d", zones, MaxZones)
	}
	vpc, err := netip.ParsePrefix(cidr)
	if err != nil {
		return Layout{}, fmt.Errorf("%q is not a CIDR block; write it as 10.20.0.0/16", cidr)
	}
	if !vpc.Addr().Is4() {
		return Layout{}, fmt.Errorf("%q is not IPv4; a VPC's primary block is IPv4, e.g. 10.20.0.0/16", cidr)
	}
	if vpc != vpc.Masked() {
		return Layout{}, fmt.Errorf("%q has host bits set; did you mean %s?", cidr, vpc.Masked())
	}
	if vpc.Bits() < largestVPC {
		return Layout{}, fmt.Errorf("%q is larger than AWS allows; use a /%d to /%d", cidr, largestVPC, smallestSubnet-publicBits)
	}
	if vpc.Bits()+publicBits > smallestSubnet {
		return Layout{}, fmt.Errorf("%q is too small for %d public, %d private and %d isolated subnets; use a /%d to /%d",
			cidr, zones, zones, zones, largestVPC, smallestSubnet-publicBits)
	}
	l := Layout{VPC: vpc}
	lastBlock := 1<<privateBits - 1
	publicPool := subnet(vpc, privateBits, lastBlock)
	isolatedPool := subnet(vpc, privateBits, lastBlock-1)
	for i := range zones {
		l.Private = append(l.Private, subnet(vpc, privateBits, i))
		l.Public = append(l.Public, subnet(publicPool, publicBits-privateBits, i))
		l.Isolated = append(l.Isolated, subnet(isolatedPool, publicBits-privateBits, i))
	}
	return l, nil
}

// subnet returns the i-th block of parent lengthened by extra bits.
func subnet(parent netip.Prefix, extra, i int) netip.Prefix {
	bits := parent.Bits() + extra
	a := parent.Addr().As4()
	base := binary.BigEndian.Uint32(a[:])
	base += uint32(i) << (32 - bits)
	binary.BigEndian.PutUint32(a[:], base)
	return netip.PrefixFrom(netip.AddrFrom4(a), bits)
}
