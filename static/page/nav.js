// What one part of the page asks of another that it does not import (the imports run one way: page.js, then the
// recent list and the views, then the forms, the API client and the DOM helpers); page.js fills it in at the start.

export const nav = {
  showTask: (id) => {},
  showSweep: (id) => {},
  refreshRecent: () => {},
};
