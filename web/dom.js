// The one way the page builds an element: tag, class, children.
export function el(tag, className = "", ...children) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (children.length) node.append(...children);
  return node;
}
