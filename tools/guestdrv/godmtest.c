// SPDX-License-Identifier: MIT OR GPL-2.0
/*
 * godmtest: a Linux driver for godm's test device (PCI 676f:646d), used only
 * by godm's real-guest tests. It exercises what a real driver does with a
 * device model: BAR mapping, bus mastering, MSI-X vectors and DMA into
 * guest memory. Register map: see devices/testdev in the godm tree.
 *
 * sysfs attributes on the PCI device:
 *   run    (write "LEN SEED"): DMA-fill LEN bytes with SEED+i, wait for the
 *          completion interrupt (MSI-X vector 0, or INTx when MSI-X is off)
 *   irqs   (read): interrupts received
 *   check  (read): "ok LEN" if the buffer holds the pattern, else the first
 *          mismatch
 */
#include <linux/module.h>
#include <linux/pci.h>
#include <linux/interrupt.h>
#include <linux/dma-mapping.h>
#include <linux/completion.h>

#define GT_MAGIC	0x00
#define GT_SCRATCH	0x04
#define GT_DMA_LO	0x08
#define GT_DMA_HI	0x0c
#define GT_DMA_LEN	0x10
#define GT_SEED		0x14
#define GT_VECTOR	0x18
#define GT_DOORBELL	0x1c
#define GT_DONE		0x20
#define GT_STATUS	0x24
#define GT_MAGIC_VALUE	0x676f646d
#define GT_BUF_SIZE	4096

struct gt {
	struct pci_dev *pdev;
	void __iomem *regs;
	void *buf;
	dma_addr_t buf_dma;
	atomic_t irqs;
	struct completion done;
	u32 len, seed;
};

static irqreturn_t gt_irq(int irq, void *data)
{
	struct gt *gt = data;

	atomic_inc(&gt->irqs);
	complete(&gt->done);
	return IRQ_HANDLED;
}

static ssize_t run_store(struct device *dev, struct device_attribute *attr,
			 const char *b, size_t n)
{
	struct gt *gt = dev_get_drvdata(dev);
	u32 len, seed;

	if (sscanf(b, "%u %u", &len, &seed) != 2 || len == 0 || len > GT_BUF_SIZE)
		return -EINVAL;
	memset(gt->buf, 0, GT_BUF_SIZE);
	gt->len = len;
	gt->seed = seed;
	reinit_completion(&gt->done);
	iowrite32(lower_32_bits(gt->buf_dma), gt->regs + GT_DMA_LO);
	iowrite32(upper_32_bits(gt->buf_dma), gt->regs + GT_DMA_HI);
	iowrite32(len, gt->regs + GT_DMA_LEN);
	iowrite32(seed, gt->regs + GT_SEED);
	iowrite32(0, gt->regs + GT_VECTOR);
	iowrite32(1, gt->regs + GT_DOORBELL);
	if (!wait_for_completion_timeout(&gt->done, 5 * HZ))
		return -ETIMEDOUT;
	return n;
}
static DEVICE_ATTR_WO(run);

static ssize_t irqs_show(struct device *dev, struct device_attribute *attr, char *b)
{
	struct gt *gt = dev_get_drvdata(dev);

	return sysfs_emit(b, "%d\n", atomic_read(&gt->irqs));
}
static DEVICE_ATTR_RO(irqs);

static ssize_t check_show(struct device *dev, struct device_attribute *attr, char *b)
{
	struct gt *gt = dev_get_drvdata(dev);
	u8 *p = gt->buf;
	u32 i;

	for (i = 0; i < gt->len; i++)
		if (p[i] != (u8)(gt->seed + i))
			return sysfs_emit(b, "mismatch %u got %u want %u\n", i, p[i],
					  (u8)(gt->seed + i));
	return sysfs_emit(b, "ok %u\n", gt->len);
}
static DEVICE_ATTR_RO(check);

static struct attribute *gt_attrs[] = {
	&dev_attr_run.attr, &dev_attr_irqs.attr, &dev_attr_check.attr, NULL,
};
ATTRIBUTE_GROUPS(gt);

static int gt_probe(struct pci_dev *pdev, const struct pci_device_id *id)
{
	struct gt *gt;
	int err, nvec;

	gt = devm_kzalloc(&pdev->dev, sizeof(*gt), GFP_KERNEL);
	if (!gt)
		return -ENOMEM;
	gt->pdev = pdev;
	init_completion(&gt->done);
	err = pcim_enable_device(pdev);
	if (err)
		return err;
	err = pcim_iomap_regions(pdev, BIT(0), "godmtest");
	if (err)
		return err;
	gt->regs = pcim_iomap_table(pdev)[0];
	if (ioread32(gt->regs + GT_MAGIC) != GT_MAGIC_VALUE) {
		dev_err(&pdev->dev, "bad magic %#x\n", ioread32(gt->regs + GT_MAGIC));
		return -ENODEV;
	}
	pci_set_master(pdev);
	err = dma_set_mask_and_coherent(&pdev->dev, DMA_BIT_MASK(64));
	if (err)
		return err;
	gt->buf = dmam_alloc_coherent(&pdev->dev, GT_BUF_SIZE, &gt->buf_dma, GFP_KERNEL);
	if (!gt->buf)
		return -ENOMEM;
	/* Vectors are released by the managed device (pcim_enable_device). */
	nvec = pci_alloc_irq_vectors(pdev, 1, 1, PCI_IRQ_MSIX | PCI_IRQ_LEGACY);
	if (nvec < 0)
		return nvec;
	err = devm_request_irq(&pdev->dev, pci_irq_vector(pdev, 0), gt_irq,
			       pdev->msix_enabled ? 0 : IRQF_SHARED, "godmtest", gt);
	if (err)
		return err;
	pci_set_drvdata(pdev, gt);
	dev_info(&pdev->dev, "godmtest: %s, dma buffer at %pad\n",
		 pdev->msix_enabled ? "MSI-X" : "INTx", &gt->buf_dma);
	return 0;
}

static const struct pci_device_id gt_ids[] = {
	{ PCI_DEVICE(0x676f, 0x646d) },
	{ }
};
MODULE_DEVICE_TABLE(pci, gt_ids);

static struct pci_driver gt_driver = {
	.name = "godmtest",
	.id_table = gt_ids,
	.probe = gt_probe,
	.dev_groups = gt_groups,
};
module_pci_driver(gt_driver);

MODULE_DESCRIPTION("godm test device driver (tests only)");
MODULE_LICENSE("Dual MIT/GPL");
