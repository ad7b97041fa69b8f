package xensim_test

import "unsafe"

// Atomic views of ioreq slot fields in a mapped ioreq page.

func slotWord(page []byte, vcpu int) *uint32 {
	return (*uint32)(unsafe.Pointer(&page[vcpu*32+28]))
}

func slotData(page []byte, vcpu int) *uint64 {
	return (*uint64)(unsafe.Pointer(&page[vcpu*32+8]))
}

func slotPort(page []byte, vcpu int) *uint32 {
	return (*uint32)(unsafe.Pointer(&page[vcpu*32+24]))
}
